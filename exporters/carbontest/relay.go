package carbontest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/picket-agent/picket/exporters/servertest"
)

// bindAttempts bounds the retries of StartRelay when another process takes the free port it
// picked before the relay binds it.
const bindAttempts = 5

// Relay is a carbon-c-relay run by StartRelay. Its methods are for the test's goroutine.
type Relay struct {
	t    testing.TB
	conf string
	addr string
	out  *servertest.Output
	proc *servertest.Process
}

// StartRelay runs carbon-c-relay with a line-mode listener on 127.0.0.1 and a free port,
// sending everything to backends (host:port each, usually Carbon.Addr values), and returns
// once it accepts connections. The test's cleanup kills it and, if the test failed, logs
// its output. It skips or fails the test as Require does if carbon-c-relay is not
// installed.
//
// The backends form one failover cluster: every point goes to the first backend that is
// up, in the order given, and to the next ones only while it is down, as a relay in front
// of a primary and a standby carbon does. With one backend that is plain forwarding. The
// relay runs in submission mode (-s), so it adds no statistics series of its own; its
// queue holds 25,000 points per backend while a backend is down.
func StartRelay(t testing.TB, backends ...string) *Relay {
	t.Helper()
	Require(t, "carbon-c-relay")
	if len(backends) == 0 {
		t.Fatal("carbontest: StartRelay needs a backend")
	}
	r := &Relay{t: t, conf: filepath.Join(t.TempDir(), "relay.conf"), out: &servertest.Output{}}
	t.Cleanup(func() {
		if r.proc != nil {
			r.proc.Stop(syscall.SIGKILL)
		}
		if t.Failed() {
			t.Logf("carbon-c-relay on %s, output:\n%s", r.addr, r.out)
		}
	})
	// carbon-c-relay binds without SO_REUSEPORT, so the port cannot be held for it as it is
	// for carbon: pick a free one, and pick again if someone else takes it first.
	for attempt := 1; ; attempt++ {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("carbontest: %v", err)
		}
		r.addr = l.Addr().String()
		l.Close()
		conf := fmt.Sprintf("listen type linemode %s proto tcp;\ncluster backends failover %s;\nmatch * send to backends stop;\n",
			r.addr, strings.Join(backends, " "))
		if err := os.WriteFile(r.conf, []byte(conf), 0o644); err != nil {
			t.Fatalf("carbontest: %v", err)
		}
		err = r.start()
		if err == nil {
			return r
		}
		if attempt == bindAttempts || !r.bindFailed() {
			t.Fatalf("carbontest: carbon-c-relay: %v", err)
		}
	}
}

// start runs carbon-c-relay and waits until it accepts connections and says it is ready.
func (r *Relay) start() error {
	// Output of this run only: an earlier run said the same.
	from := len(r.out.String())
	proc, err := startProcess(r.out, "carbon-c-relay", "-f", r.conf, "-s", "-H", "carbontest")
	if err != nil {
		return err
	}
	r.proc = proc
	port := r.addr[strings.LastIndexByte(r.addr, ':')+1:]
	return waitAccepting(proc, r.addr, func() bool {
		// Someone else may be listening on the port: the relay's own word settles it.
		return strings.Contains(r.out.String()[from:], "listening on tcp4 127.0.0.1 port "+port)
	})
}

// bindFailed reports whether the relay's last run could not bind its port.
func (r *Relay) bindFailed() bool {
	out := r.out.String()
	last := out[strings.LastIndex(out, "--- carbontest: carbon-c-relay "):]
	return strings.Contains(last, "failed to bind")
}

// Addr is the relay's address, 127.0.0.1:port. It is the same after Restart.
func (r *Relay) Addr() string { return r.addr }

// Log is what carbon-c-relay has printed so far, over all its runs.
func (r *Relay) Log() string { return r.out.String() }

// Stop stops the relay with SIGTERM and waits for it to exit (SIGKILL after 30 s, which
// fails the test). The relay closes its listener and tries for a few seconds to send what
// it queued; what it cannot send is dropped, and it says so in its log. It is a no-op if the
// relay is not running.
func (r *Relay) Stop() {
	r.t.Helper()
	if err := r.proc.Stop(syscall.SIGTERM); err != nil {
		r.t.Errorf("carbontest: %v", err)
	}
}

// Kill kills the relay with SIGKILL and waits for it to exit: its queues are lost. It is a
// no-op if the relay is not running.
func (r *Relay) Kill() {
	r.t.Helper()
	if err := r.proc.Stop(syscall.SIGKILL); err != nil {
		r.t.Errorf("carbontest: %v", err)
	}
}

// Restart stops the relay if it is running, as Stop does, and starts it again on the same
// port. It fails the test if the port was taken meanwhile.
func (r *Relay) Restart() {
	r.t.Helper()
	r.Stop()
	if err := r.start(); err != nil {
		r.t.Fatalf("carbontest: carbon-c-relay: %v", err)
	}
}
