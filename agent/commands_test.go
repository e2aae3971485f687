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
		case "oom":
			// The fixture's sysfs has no kernel BTF: the eBPF collector is down, saying why,
			// and that is no reason for check to fail.
			state = "down +0 samples +cannot run here: kernel has no BTF"
		}
		if !regexp.MustCompile(`(?m)^collector +` + f.Name + ` +` + state + ` `).MatchString(out) {
			t.Errorf("%s is not listed as %s:\n%s", f.Name, state, out)
		}
	}
	if !regexp.MustCompile(`(?m)^procfs +\S+/proc/stat +ok$`).MatchString(out) {
		t.Errorf("procfs not reported ok:\n%s", out)
	}
	for _, re := range []string{`(?m)^kernel +\S+`, `(?m)^privileges +\S+ +(ok|missing: needs CAP_BPF)`, `(?m)^hook +mark_victim\S* +.+ \(collector oom\)$`} {
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
