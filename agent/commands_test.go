package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/picket-agent/picket/collectors"
	"github.com/picket-agent/picket/exporters/spool"
)

// check runs `picket check` over the proc/ and sys/ of root, fs off (its statfs would reach
// the real mounts) and processes on.
func check(t *testing.T, root string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), []string{"check", "--config", writeConfig(t, ""),
		"--path.procfs", filepath.Join(root, "proc"), "--path.sysfs", filepath.Join(root, "sys"),
		"--no-collector.fs", "--collector.processes"}, &out, &errb)
	return code, out.String(), errb.String()
}

// TestCheck: every collector is listed with its state, a failing one makes check exit 1,
// and a procfs that is not there exits 2 after saying so.
func TestCheck(t *testing.T) {
	code, out, stderr := check(t, fixtureRoot)
	if code != 0 {
		t.Fatalf("check on the fixture: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	for _, f := range collectors.All {
		state := "ok"
		switch f.Name {
		case "fs":
			state = "disabled"
		case "oom", "runqlat":
			// The fixture's sysfs has no kernel BTF: the eBPF collectors are down, saying
			// why, and that is no reason for check to fail.
			state = "down +0 samples +cannot run here: kernel has no BTF"
		}
		if !regexp.MustCompile(`(?m)^collector +` + f.Name + ` +` + state + ` `).MatchString(out) {
			t.Errorf("%s is not listed as %s:\n%s", f.Name, state, out)
		}
	}
	if !regexp.MustCompile(`(?m)^procfs +\S+/proc/stat +ok$`).MatchString(out) {
		t.Errorf("procfs not reported ok:\n%s", out)
	}
	for _, re := range []string{`(?m)^kernel +\S+`, `(?m)^privileges +\S+ +(ok|missing: needs CAP_BPF)`, `(?m)^hook +mark_victim\S* +.+ \(collector oom\)$`, `(?m)^hook +sched_switch\S* +.+ \(collector runqlat\)$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("no line matching %s:\n%s", re, out)
		}
	}

	broken := t.TempDir()
	if err := os.CopyFS(broken, os.DirFS(fixtureRoot)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(broken, "proc", "loadavg"), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = check(t, broken)
	if code != 1 || !regexp.MustCompile(`(?m)^collector +load +failing `).MatchString(out) || !strings.Contains(stderr, "collector=load") {
		t.Errorf("a failing collector: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}

	code, out, stderr = check(t, filepath.Join(t.TempDir(), "nothing"))
	if code != 2 || !regexp.MustCompile(`(?m)^procfs +\S+/proc/stat +missing: `).MatchString(out) {
		t.Errorf("no procfs: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
}

// TestSpoolDirErrors: a spool directory picket cannot use stops `run` before anything
// starts, with status 2 like a bad option, naming the option, the directory and why.
func TestSpoolDirErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// Not writable: root writes anywhere on a normal filesystem, but not into sysfs.
	readOnly := filepath.Join(dir, "read-only")
	if err := os.Mkdir(readOnly, 0o500); err != nil {
		t.Fatal(err)
	}
	notWritable := filepath.Join(readOnly, "spool")
	if os.Geteuid() == 0 {
		notWritable = "/sys/picket-spool-test"
	}
	inUse := filepath.Join(dir, "in-use")
	sp, err := spool.Open(spool.Options{Dir: inUse, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()

	for _, tc := range []struct {
		name, dir string
		config    bool // set in the config file rather than by the flag
		want      []string
	}{
		{name: "a file", dir: file, want: []string{"--spool.dir: cannot use " + file + ": ", "not a directory"}},
		{name: "under a file", dir: filepath.Join(file, "spool"), want: []string{"--spool.dir: cannot use " + file + "/spool: ", "not a directory"}},
		{name: "not writable", dir: notWritable, want: []string{"--spool.dir: cannot use " + notWritable + ": ", "mkdir " + notWritable}},
		{name: "in use", dir: inUse, want: []string{"--spool.dir: cannot use " + inUse + ": ", "in use by another process"}},
		{name: "set in the config file", dir: file, config: true, want: []string{`:1: key "spool.dir": cannot use ` + file + ": ", "not a directory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"run", "--graphite.address", "127.0.0.1:1"}
			cfg := ""
			if tc.config {
				cfg = "spool.dir: " + tc.dir + "\n"
			} else {
				args = append(args, "--spool.dir", tc.dir)
			}
			args = append(args, "--config", writeConfig(t, cfg))
			var stdout, stderr bytes.Buffer
			if code := Main(context.Background(), args, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q does not contain %q", stderr.String(), w)
				}
			}
			if strings.Contains(stderr.String(), "picket running") {
				t.Errorf("something started: %s", stderr.String())
			}
		})
	}
}
