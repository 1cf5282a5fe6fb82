package loadgen

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps the generator on the caller side (STYLE §1): it must
// judge verifier answers by the wire contract, not by sharing the
// pipeline's code, and it has no business with NATS.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case strings.HasSuffix(dep, "/internal/core"), strings.HasSuffix(dep, "/internal/proxy"):
			t.Errorf("loadgen imports %s: a load generator that shares the verifier's code could share its bugs", dep)
		case strings.Contains(dep, "nats-io/"):
			t.Errorf("loadgen imports %s: the generator has nothing to do with NATS", dep)
		}
	}
}
