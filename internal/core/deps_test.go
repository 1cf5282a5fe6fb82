package core

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps core pure (STYLE §1): the pipeline must stay fast and
// testable without a network, so it imports no HTTP server, no NATS, no
// telemetry and no logger. Adapters bring those.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := map[string]string{
		"net/http":                   "core decides; internal/proxy speaks HTTP",
		"log/slog":                   "core reports through Decision.Err; adapters log",
		"github.com/nats-io/nats.go": "the ledger reaches core through the Ledger interface",
		"github.com/nats-io/nats-server/v2/server": "no server in the pipeline",
		"go.opentelemetry.io/otel":                 "internal/proxy wraps Decide in a span",
	}
	for _, pkg := range strings.Fields(string(out)) {
		for bad, why := range forbidden {
			if pkg == bad || strings.HasPrefix(pkg, bad+"/") {
				t.Errorf("core depends on %s: %s", pkg, why)
			}
		}
	}
}
