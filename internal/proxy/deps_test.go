package proxy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps: the HTTP adapter never talks to NATS (STYLE §1); the ledger and
// audit reach it through core and the Record hook.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "github.com/nats-io/") {
			t.Errorf("proxy depends on %s: NATS belongs to ledger, audit and bundlekv", pkg)
		}
	}
}
