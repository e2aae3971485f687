// Package testenv decides what a test does when the machine lacks something it needs:
// on a developer's laptop it skips, saying why; in CI (PICKET_REQUIRE_PRIVILEGED set, as
// .ci/run and `make test` under it do) it fails, because there a missing privilege or
// program is a broken machine, and a skip would hide what the test should have checked.
package testenv

import (
	"os"
	"testing"
)

// RequireVar is the environment variable that turns skips into failures.
const RequireVar = "PICKET_REQUIRE_PRIVILEGED"

// Required reports whether RequireVar is set.
func Required() bool {
	return os.Getenv(RequireVar) != ""
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
