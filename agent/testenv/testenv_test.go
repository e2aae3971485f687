package testenv

import "testing"

// TestRequired: set to anything but "", "0" or "false", the requirement is on.
func TestRequired(t *testing.T) {
	for v, want := range map[string]bool{"": false, "0": false, "false": false, "FALSE": false, " 0 ": false, "1": true, "true": true, "yes": true} {
		t.Setenv(RequireVar, v)
		if got := Required(); got != want {
			t.Errorf("%s=%q: Required() = %v, want %v", RequireVar, v, got, want)
		}
	}
}
