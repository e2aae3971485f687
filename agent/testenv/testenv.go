// Package testenv decides what a test does when the machine lacks something it needs:
// on a developer's laptop it skips, saying why; in CI (PICKET_REQUIRE_PRIVILEGED=1, as
// .ci/run and `make test` under it do) it fails, because there a missing privilege or
// program is a broken machine, and a skip would hide what the test should have checked.
package testenv

import (
	"os"
	"strings"
	"testing"
)

// RequireVar is the environment variable that turns skips into failures.
const RequireVar = "PICKET_REQUIRE_PRIVILEGED"

// Required reports whether RequireVar is set to something other than "", "0" or "false"
// (PICKET_REQUIRE_PRIVILEGED=0 turns the requirement off, as one would expect).
func Required() bool {
	switch strings.ToLower(strings.TrimSpace(os.Getenv(RequireVar))) {
	case "", "0", "false":
		return false
	}
	return true
}

// Require returns if ok; otherwise it skips t with why, or fails it when Required.
func Require(t testing.TB, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if Required() {
		t.Fatal(why + "; " + RequireVar + " is set, so this fails rather than skips")
	}
	t.Skip(why)
}

// RequireRoot requires euid 0: what loading eBPF probes, making cgroups and installing
// packages take together.
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "needs root")
}
