package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Cgroup makes the cgroup name in the hierarchy mounted at dir (below its root) and
// returns its directory. When the test ends, the tasks still in it are moved to the root
// and it is removed. Tests that use it need root (RequireRoot).
func Cgroup(t testing.TB, dir, name string) string {
	t.Helper()
	cg := filepath.Join(dir, name)
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var err error
		for range 100 {
			if b, rerr := os.ReadFile(filepath.Join(cg, "cgroup.procs")); rerr == nil {
				for _, pid := range strings.Fields(string(b)) {
					_ = os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(pid), 0o644)
				}
			}
			// A cgroup lingers for a moment after its last task died.
			if err = os.Remove(cg); err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("removing test cgroup %s: %v", cg, err)
	})
	return cg
}

// Spin starts n processes that spin on the CPU without end inside cgroup directory cg,
// each allowed to run on cpu only, and kills them when the test ends (or when the
// returned stop is called). They enter the cgroup before they start spinning.
func Spin(t testing.TB, cg string, cpu, n int) (stop func()) {
	t.Helper()
	return start(t, cg, cpu, n, "while :; do :; done")
}

// Sleep starts a process that sleeps inside cgroup directory cg (a cgroup with a task
// that never waits for a CPU), killed when the test ends.
func Sleep(t testing.TB, cg string) {
	t.Helper()
	start(t, cg, -1, 1, "exec sleep 3600")
}

func start(t testing.TB, cg string, cpu, n int, script string) (stop func()) {
	t.Helper()
	procs := filepath.Join(cg, "cgroup.procs")
	var cmds []*exec.Cmd
	stop = func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
		cmds = nil
	}
	t.Cleanup(stop)
	for range n {
		// The shell moves itself into the cgroup, then runs the script.
		c := exec.Command("/bin/sh", "-c", fmt.Sprintf(`echo $$ > %q && %s`, procs, script))
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, c)
		if cpu >= 0 {
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(c.Process.Pid, &set); err != nil {
				t.Fatal(err)
			}
		}
	}
	return stop
}
