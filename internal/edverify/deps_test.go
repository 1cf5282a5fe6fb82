package edverify

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps edverify pure (STYLE §1): it is called on core's hot path,
// so it does crypto and nothing else.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := map[string]string{
		"net/http":                   "edverify verifies signatures; adapters speak HTTP",
		"log/slog":                   "edverify answers with a bool; callers log",
		"github.com/nats-io/nats.go": "no network on the verification path",
		"github.com/tpcluster/tpcluster/internal/core": "core adopts edverify, not the reverse",
	}
	for _, pkg := range strings.Fields(string(out)) {
		for bad, why := range forbidden {
			if pkg == bad || strings.HasPrefix(pkg, bad+"/") {
				t.Errorf("edverify depends on %s: %s", pkg, why)
			}
		}
	}
}
