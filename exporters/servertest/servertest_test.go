package servertest

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStartStop(t *testing.T) {
	t.Parallel()
	var out Output
	p, err := Start(&out, "label", nil, "sleep", "60")
	if err != nil {
		t.Fatal(err)
	}
	if !p.Running() || p.Err() != nil {
		t.Fatalf("after Start: Running %v, Err %v; want true, nil", p.Running(), p.Err())
	}
	if err := p.Stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if p.Running() || p.Err() == nil {
		t.Fatalf("after Stop: Running %v, Err %v; want false, the signal", p.Running(), p.Err())
	}
	if err := p.Stop(syscall.SIGTERM); err != nil {
		t.Errorf("second Stop: %v, want nil", err)
	}
	want := "--- label: sleep 60\n--- label: sleep exited: signal: terminated\n"
	if got := out.String(); got != want {
		t.Errorf("output %q, want %q", got, want)
	}
}

func TestStartEnvAndExit(t *testing.T) {
	t.Parallel()
	var out Output
	p, err := Start(&out, "label", []string{"X=from-env"}, "sh", "-c", `echo "$X"; exit 3`)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(StopTimeout)
	for p.Running() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if p.Err() == nil || !strings.Contains(p.Err().Error(), "exit status 3") {
		t.Errorf("Err %v, want exit status 3", p.Err())
	}
	if got := out.String(); !strings.Contains(got, "\nfrom-env\n--- label: sh exited: exit status 3\n") {
		t.Errorf("output %q lacks the environment's value and the exit line", got)
	}
}

func TestStartMissing(t *testing.T) {
	t.Parallel()
	if _, err := Start(&Output{}, "label", nil, "servertest-no-such-command"); err == nil {
		t.Error("Start of a missing command: nil error")
	}
}
