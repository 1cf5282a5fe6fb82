package passport

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps the package pure (STYLE §1): it sits on the request hot
// path of core, which must stay free of transports and loggers.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	forbidden := map[string]string{
		"net/http":            "HTTP belongs to internal/proxy; passport only parses bytes",
		"github.com/nats-io/": "NATS belongs to the adapters (ledger, audit, bundlekv)",
		"log/slog":            "passport never logs: a passport is a bearer credential",
		"github.com/go-jose/": "go-jose is the tests' differential oracle, not the parser",
		"encoding/json":       "the hot path has its own allocation-free JSON reader",
		"github.com/tpcluster/tpcluster/internal/core": "core depends on passport, not the reverse",
	}
	for _, dep := range strings.Fields(string(out)) {
		for prefix, why := range forbidden {
			if dep == prefix || strings.HasPrefix(dep, prefix) && strings.HasSuffix(prefix, "/") {
				t.Errorf("passport imports %s: %s", dep, why)
			}
		}
	}
}
