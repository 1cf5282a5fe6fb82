package signer

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps the caller side apart from the verifier (STYLE §1): a
// signer that imported core could share a bug with the code it tests, and
// NATS has no place on the caller side.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case strings.HasSuffix(dep, "/internal/core"):
			t.Errorf("signer imports %s: the caller side must not share code with the verifier pipeline it is used to test", dep)
		case strings.Contains(dep, "nats-io/"):
			t.Errorf("signer imports %s: the caller side has nothing to do with NATS", dep)
		}
	}
}
