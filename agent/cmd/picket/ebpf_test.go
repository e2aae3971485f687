package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/testenv"
)

// asCaps runs picket as root limited to the capabilities of bounding (a setpriv
// --bounding-set list, "-all,+bpf" say) and returns its exit code, stdout and stderr.
func asCaps(t *testing.T, bounding string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args = append([]string{"--inh-caps=-all", "--bounding-set=" + bounding, "--", binary}, append(args, "--config", emptyConfig(t))...)
	cmd := exec.CommandContext(ctx, "setpriv", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

// TestEBPFDegradation (root, setpriv): the same binary without the capabilities eBPF needs
// runs on: `once` reports the eBPF collectors (oom, runqlat) down (up 0) with one log line
// each naming what is missing and how to fix it, and still emits every procfs collector;
// `check` says so and exits 0; `run --strict` exits 1 with the reason. With CAP_BPF and
// CAP_PERFMON alone (root's other capabilities dropped) the probes load.
func TestEBPFDegradation(t *testing.T) {
	testenv.RequireRoot(t)
	_, err := exec.LookPath("setpriv")
	testenv.Require(t, err == nil, "setpriv not installed (Debian package util-linux)")

	for _, c := range []struct {
		name, bounding, missing string
	}{
		{"no capabilities", "-all", "CAP_BPF, CAP_PERFMON"},
		{"CAP_BPF alone", "-all,+bpf", "CAP_PERFMON"},
		{"CAP_BPF and CAP_PERFMON", "-all,+bpf,+perfmon", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			code, out, stderr := asCaps(t, c.bounding, "once", "--hostname", "host")
			if code != 0 {
				t.Fatalf("once: exit %d\n%s", code, stderr)
			}
			up := "1"
			if c.missing != "" {
				up = "0"
			}
			for _, want := range []string{
				"hosts.host.picket.collector.oom.up " + up + " ", "hosts.host.picket.collector.runqlat.up " + up + " ",
				"hosts.host.picket.collector.cpu.success 1 ", "hosts.host.cpu.total.user ",
				"hosts.host.memory.mem_total ", "hosts.host.picket.collector.vmstat.success 1 ",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("once: no %q in the output", want)
				}
			}
			warnings := regexp.MustCompile(`(?m)^.*level=WARN.*$`).FindAllString(stderr, -1)
			if c.missing == "" {
				if len(warnings) != 0 || !strings.Contains(out, "hosts.host.picket.bpf.oom.maps_bytes ") || !strings.Contains(out, "hosts.host.oom.kills ") ||
					!strings.Contains(out, "hosts.host.picket.bpf.runqlat.maps_bytes ") || !strings.Contains(out, "hosts.host.runqlat.count ") {
					t.Errorf("with the capabilities they need, oom and runqlat should run:\nwarnings %v\n%s", warnings, out)
				}
				return
			}
			reason := "needs CAP_BPF and CAP_PERFMON (or root): run as root or grant them in the systemd unit (AmbientCapabilities=CAP_BPF CAP_PERFMON) (missing " + c.missing + ")"
			// One warning per eBPF collector.
			if len(warnings) != 2 || !strings.Contains(warnings[0], "collector=oom") || !strings.Contains(warnings[0], reason) ||
				!strings.Contains(warnings[1], "collector=runqlat") || !strings.Contains(warnings[1], reason) {
				t.Errorf("want a warning for oom and one for runqlat naming %q, got:\n%s", reason, stderr)
			}

			code, out, stderr = asCaps(t, c.bounding, "check")
			if code != 0 || !regexp.MustCompile(`(?m)^collector +oom +down +0 samples +cannot run here: `+regexp.QuoteMeta(reason)+`$`).MatchString(out) ||
				!regexp.MustCompile(`(?m)^collector +runqlat +down +0 samples +cannot run here: `+regexp.QuoteMeta(reason)+`$`).MatchString(out) ||
				!regexp.MustCompile(`(?m)^privileges +.*missing: needs CAP_BPF`).MatchString(out) ||
				!regexp.MustCompile(`(?m)^collector +cpu +ok `).MatchString(out) {
				t.Errorf("check: exit %d\n%s\n%s", code, out, stderr)
			}

			code, _, stderr = asCaps(t, c.bounding, "run", "--strict")
			if code != 1 || !strings.Contains(stderr, "picket: --strict: collector oom: cannot run here: "+reason) {
				t.Errorf("run --strict: exit %d, want 1 with the reason\n%s", code, stderr)
			}
		})
	}
}
