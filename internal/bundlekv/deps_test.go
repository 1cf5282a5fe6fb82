package bundlekv

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps checks bundlekv's direct imports (STYLE §1).
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := map[string]bool{
		"github.com/tpcluster/tpcluster/internal/bundle": true,
		"github.com/tpcluster/tpcluster/internal/reason": true,
		"github.com/tpcluster/tpcluster/internal/audit":  true,
		"github.com/tpcluster/tpcluster/internal/natsx":  true,
	}
	for line := range strings.Lines(string(out)) {
		pkg := strings.TrimSpace(line)
		switch {
		case pkg == "github.com/tpcluster/tpcluster/internal/core":
			t.Errorf("bundlekv imports core: it serves verified documents; verifierd turns them into a core.Snapshot")
		case pkg == "net/http" || strings.HasPrefix(pkg, "net/http/"):
			t.Errorf("bundlekv imports %s: HTTP is internal/proxy's job", pkg)
		case strings.HasPrefix(pkg, "github.com/nats-io/nats-server"):
			t.Errorf("bundlekv imports %s: it is a client; servers are internal/natsx's job", pkg)
		case strings.HasPrefix(pkg, "go.opentelemetry.io/otel/sdk"), pkg == "go.opentelemetry.io/otel":
			t.Errorf("bundlekv imports %s: packages use the OTel API with a provider from config (STYLE §8)", pkg)
		case strings.HasPrefix(pkg, "github.com/tpcluster/tpcluster/internal/") && !allowed[pkg]:
			t.Errorf("bundlekv imports %s: only bundle, reason, audit and natsx are allowed", pkg)
		}
	}
}
