package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picket-agent/picket/collectors"
)

func writeConfig(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "picket.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigErrors: each bad config exits 2 before anything starts, and stderr names the
// file, the line, the key and what is wrong.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"unknown key", "interval: 10s\nintervall: 5s\n", []string{":2:", `"intervall"`, "unknown option"}},
		{"unknown nested key", "path:\n  procfs: /proc\n  prcfs: /x\n", []string{":3:", `"path.prcfs"`, "unknown option"}},
		{"wrong type duration", "interval: often\n", []string{":1:", `"interval"`, "invalid duration"}},
		{"wrong type bool", "collector:\n  cpu: maybe\n", []string{":2:", `"collector.cpu"`, "bool"}},
		{"interval zero", "interval: 0s\n", []string{":1:", `"interval"`, "must be positive"}},
		{"negative timeout", "timeout: -1s\n", []string{":1:", `"timeout"`, "must be positive"}},
		{"bad regexp", "collector:\n  disk:\n    device-exclude: \"(\"\n", []string{":3:", `"collector.disk.device-exclude"`, "missing closing )"}},
		{"set twice", "path.procfs: /a\npath:\n  procfs: /b\n", []string{":3:", `"path.procfs"`, "set twice (first on line 1)"}},
		{"no value", "prefix:\n", []string{":1:", `"prefix"`, "no value"}},
		{"not a map", "- interval\n", []string{":1:", "top level must be a map"}},
		{"yaml syntax", "interval: [10s\n", []string{"yaml"}},
		{"empty prefix", "prefix: ''\n", []string{`"prefix"`, "must not be empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.body)
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), []string{"once", "--config", path}, &stdout, &stderr)
			if code != 2 {
				t.Errorf("exit %d, want 2; stderr: %s", code, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("something ran: stdout %q", stdout.String())
			}
			msg := stderr.String()
			for _, w := range append([]string{path}, tc.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("stderr %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestMissingConfig(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	var stderr bytes.Buffer
	if code := Main(context.Background(), []string{"once", "--config", missing}, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), missing) {
		t.Errorf("named missing config: exit %d, stderr %q", code, stderr.String())
	}
	// The default file may be absent: picket runs on defaults.
	cli, _, err := parse([]string{"version"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err != nil || cli.Interval != 10*time.Second {
		t.Errorf("defaults: interval %v, err %v", cli.Interval, err)
	}
}

func TestBadFlagAndEnv(t *testing.T) {
	var stderr bytes.Buffer
	if code := Main(context.Background(), []string{"once", "--interval", "0s", "--config", writeConfig(t, "")}, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), "--interval: must be positive") {
		t.Errorf("flag: exit %d, stderr %q", code, stderr.String())
	}
	t.Setenv("PICKET_INTERVAL", "-5s")
	stderr.Reset()
	if code := Main(context.Background(), []string{"once", "--config", writeConfig(t, "")}, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), "$PICKET_INTERVAL: must be positive") {
		t.Errorf("env: exit %d, stderr %q", code, stderr.String())
	}
}

// TestPrecedence: flag > environment > file > default, for a value and a collector switch.
func TestPrecedence(t *testing.T) {
	file := writeConfig(t, "interval: 20s\ncollector:\n  cpu: false\npath:\n  procfs: /file/proc\n")
	for _, tc := range []struct {
		name      string
		env       map[string]string
		args      []string
		interval  time.Duration
		cpu       bool
		procfs    string
		useConfig bool
	}{
		{name: "default", interval: 10 * time.Second, cpu: true, procfs: "/proc"},
		{name: "file", useConfig: true, interval: 20 * time.Second, cpu: false, procfs: "/file/proc"},
		{name: "env over file", useConfig: true, env: map[string]string{"PICKET_INTERVAL": "30s", "PICKET_COLLECTOR_CPU": "true"}, interval: 30 * time.Second, cpu: true, procfs: "/file/proc"},
		{name: "flag over env", useConfig: true, env: map[string]string{"PICKET_INTERVAL": "30s", "PICKET_COLLECTOR_CPU": "true"}, args: []string{"--interval=40s", "--no-collector.cpu", "--path.procfs=/flag/proc"}, interval: 40 * time.Second, cpu: false, procfs: "/flag/proc"},
		{name: "env config path", env: map[string]string{"PICKET_CONFIG": file}, interval: 20 * time.Second, cpu: false, procfs: "/file/proc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := append([]string{"once"}, tc.args...)
			if tc.useConfig {
				args = append(args, "--config", file)
			} else if tc.env["PICKET_CONFIG"] == "" {
				args = append(args, "--config", writeConfig(t, ""))
			}
			cli, _, err := parse(args, &bytes.Buffer{}, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			var cpu bool
			for i, f := range collectors.All {
				if f.Name == "cpu" {
					cpu = cli.collectorEnabled(i)
				}
			}
			if cli.Interval != tc.interval || cpu != tc.cpu || cli.Path.Procfs != tc.procfs {
				t.Errorf("interval %v cpu %v procfs %q; want %v %v %q", cli.Interval, cpu, cli.Path.Procfs, tc.interval, tc.cpu, tc.procfs)
			}
		})
	}
}

// TestEveryCollectorHasASwitch: the registry drives --[no-]collector.<name>.
func TestEveryCollectorHasASwitch(t *testing.T) {
	var out bytes.Buffer
	code := Main(context.Background(), []string{"run", "--help"}, &out, &out)
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, name := range []string{"cpu", "disk", "fs", "net", "vmstat"} {
		if !strings.Contains(out.String(), "--[no-]collector."+name+" ") {
			t.Errorf("help lacks --[no-]collector.%s:\n%s", name, out.String())
		}
	}
	for _, env := range []string{"PICKET_INTERVAL", "PICKET_PATH_PROCFS", "PICKET_COLLECTOR_CPU_PER_CPU"} {
		if !strings.Contains(out.String(), env) {
			t.Errorf("help does not document %s", env)
		}
	}
}
