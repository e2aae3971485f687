// Package servertest runs the server processes of test packages such as carbontest and
// influxtest: it starts one, collects what it prints, and stops it, killing it if it does
// not exit in time. It knows nothing of what the server is; waiting until it is ready is
// left to the caller, who knows what ready means.
package servertest

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StopTimeout bounds the wait of Stop for a server to exit after its signal, before
// SIGKILL. Servers exit in a second or two; the rest is for loaded CI machines.
const StopTimeout = 30 * time.Second

// Output collects what a server prints, over all its runs. It is written by the goroutines
// of os/exec and read by the test. The zero value is ready to use.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p. It is safe to call from any goroutine.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

// String returns everything written so far. It is safe to call from any goroutine.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// Process is one run of a server, started by Start.
type Process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once it has exited and its output is collected
	err    error         // how it exited, once exited is closed
}

// Start runs name with args, its stdout and stderr going to out, and its environment env
// (as exec.Cmd.Env: nil is the test's own). It writes a line to out, prefixed with
// "--- label: ", when the process starts and another when it exits, so that the runs of a
// server can be told apart in out. The process is killed if the test binary dies.
func Start(out *Output, label string, env []string, name string, args ...string) (*Process, error) {
	fmt.Fprintf(out, "--- %s: %s %s\n", label, name, strings.Join(args, " "))
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = env
	// If the test binary dies (a panic, go test's timeout), the server goes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		fmt.Fprintf(out, "--- %s: %s exited: %v\n", label, name, p.err)
		close(p.exited)
	}()
	return p, nil
}

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Err is how the process exited, as exec.Cmd.Wait reports it, once Running is false; nil
// while it runs.
func (p *Process) Err() error {
	select {
	case <-p.exited:
		return p.err
	default:
		return nil
	}
}

// Stop sends sig and waits for the process to exit, sending SIGKILL after StopTimeout,
// which it reports as an error. It is a no-op if the process has exited.
func (p *Process) Stop(sig syscall.Signal) error {
	if !p.Running() {
		return nil
	}
	p.cmd.Process.Signal(sig)
	t := time.NewTimer(StopTimeout)
	defer t.Stop()
	select {
	case <-p.exited:
		return nil
	case <-t.C:
		p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s still running %v after %v, killed", p.cmd.Path, StopTimeout, sig)
	}
}
