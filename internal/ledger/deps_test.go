package ledger

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps checks the ledger's direct imports (STYLE §1: for adapters the
// rule is about direct imports; nats.go itself pulls in net/http for
// websockets).
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for line := range strings.Lines(string(out)) {
		pkg := strings.TrimSpace(line)
		switch {
		case pkg == "net/http" || strings.HasPrefix(pkg, "net/http/"):
			t.Errorf("ledger imports %s: it knows keys and TTLs, not requests; HTTP is internal/proxy's job", pkg)
		case strings.HasPrefix(pkg, "github.com/nats-io/nats-server"):
			t.Errorf("ledger imports %s: it is a client; servers are internal/natsx's job", pkg)
		case strings.HasPrefix(pkg, "go.opentelemetry.io/otel/sdk"), pkg == "go.opentelemetry.io/otel":
			t.Errorf("ledger imports %s: packages use the OTel API with a provider from config, never the SDK or the global (STYLE §8)", pkg)
		case strings.HasPrefix(pkg, "github.com/tpcluster/tpcluster/internal/") &&
			pkg != "github.com/tpcluster/tpcluster/internal/core" &&
			pkg != "github.com/tpcluster/tpcluster/internal/natsx":
			t.Errorf("ledger imports %s: only core (the contract) and natsx are allowed", pkg)
		}
	}
}
