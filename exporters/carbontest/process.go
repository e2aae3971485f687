package carbontest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/testenv"
)

const (
	// startTimeout bounds the wait for a server to accept connections. carbon-cache takes
	// one to two seconds to import Twisted; the rest is for loaded CI machines.
	startTimeout = 30 * time.Second
	// stopTimeout bounds the wait for a server to exit after SIGTERM before SIGKILL.
	stopTimeout = 30 * time.Second
	// pollInterval is the period of every wait.
	pollInterval = 20 * time.Millisecond
)

// debPackage names the Debian package of each command the package runs.
var debPackage = map[string]string{
	"carbon-cache":   "graphite-carbon",
	"carbon-c-relay": "carbon-c-relay",
	"whisper-fetch":  "python3-whisper",
}

// Require skips the test unless every command named is installed, or, when the environment
// variable PICKET_REQUIRE_PRIVILEGED is set (CI sets it, and `make test` installs them),
// fails it: in CI a missing server is a broken machine, not a reason to test less.
func Require(t testing.TB, commands ...string) {
	t.Helper()
	var missing []string
	for _, c := range commands {
		if _, err := exec.LookPath(c); err != nil {
			if pkg := debPackage[c]; pkg != "" {
				c += " (Debian package " + pkg + ")"
			}
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return
	}
	testenv.Require(t, false, "not installed: "+strings.Join(missing, ", "))
}

// output collects what a server prints, over all its runs. It is written by the goroutines
// of os/exec and read by the test.
type output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// process is one run of a server.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once it has exited and its output is collected
	err    error         // how it exited, once exited is closed
}

func startProcess(out *output, name string, args ...string) (*process, error) {
	fmt.Fprintf(out, "--- carbontest: %s %s\n", name, strings.Join(args, " "))
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	// Twisted's import of deprecated ciphers would open every carbon log with 8 lines.
	cmd.Env = append(os.Environ(), "PYTHONWARNINGS=ignore")
	// If the test binary dies (a panic, go test's timeout), the server goes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		fmt.Fprintf(out, "--- carbontest: %s exited: %v\n", name, p.err)
		close(p.exited)
	}()
	return p, nil
}

// running reports whether the process has not exited yet.
func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends sig and waits for the process to exit, sending SIGKILL after stopTimeout.
func (p *process) stop(sig syscall.Signal) error {
	if !p.running() {
		return nil
	}
	p.cmd.Process.Signal(sig)
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	select {
	case <-p.exited:
		return nil
	case <-t.C:
		p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s still running %v after %v, killed", p.cmd.Path, stopTimeout, sig)
	}
}

// waitAccepting waits until addr accepts TCP connections and ready reports true. It gives
// up when p exits, returning the exit status, or after startTimeout.
func (p *process) waitAccepting(addr string, ready func() bool) error {
	deadline := time.Now().Add(startTimeout)
	for {
		if !p.running() {
			return fmt.Errorf("exited before accepting connections: %v", p.err)
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			if ready() {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not accepting connections on %s after %v", addr, startTimeout)
		}
		time.Sleep(pollInterval)
	}
}
