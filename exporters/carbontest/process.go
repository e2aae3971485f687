package carbontest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/testenv"
	"github.com/picket-agent/picket/exporters/servertest"
)

const (
	// startTimeout bounds the wait for a server to accept connections. carbon-cache takes
	// one to two seconds to import Twisted; the rest is for loaded CI machines.
	startTimeout = 30 * time.Second
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

// startProcess runs a server of this package, logging to out as "--- carbontest: ".
func startProcess(out *servertest.Output, name string, args ...string) (*servertest.Process, error) {
	// Twisted's import of deprecated ciphers would open every carbon log with 8 lines.
	return servertest.Start(out, "carbontest", append(os.Environ(), "PYTHONWARNINGS=ignore"), name, args...)
}

// waitAccepting waits until addr accepts TCP connections and ready reports true. It gives
// up when p exits, returning the exit status, or after startTimeout.
func waitAccepting(p *servertest.Process, addr string, ready func() bool) error {
	deadline := time.Now().Add(startTimeout)
	for {
		if !p.Running() {
			return fmt.Errorf("exited before accepting connections: %v", p.Err())
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
