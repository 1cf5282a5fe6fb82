package audit

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps checks audit's direct imports (STYLE §1).
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for line := range strings.Lines(string(out)) {
		pkg := strings.TrimSpace(line)
		switch {
		case pkg == "github.com/tpcluster/tpcluster/internal/core":
			t.Errorf("audit imports %s: verifierd maps decisions to events; audit must not know the pipeline", pkg)
		case pkg == "net/http" || strings.HasPrefix(pkg, "net/http/"):
			t.Errorf("audit imports %s: HTTP is internal/proxy's job", pkg)
		case strings.HasPrefix(pkg, "github.com/nats-io/nats-server"):
			t.Errorf("audit imports %s: it is a client; servers are internal/natsx's job", pkg)
		case strings.HasPrefix(pkg, "go.opentelemetry.io/otel/sdk"), pkg == "go.opentelemetry.io/otel":
			t.Errorf("audit imports %s: the OTel API with a provider from config only (STYLE §8)", pkg)
		case strings.HasPrefix(pkg, "github.com/tpcluster/tpcluster/internal/") &&
			pkg != "github.com/tpcluster/tpcluster/internal/reason" &&
			pkg != "github.com/tpcluster/tpcluster/internal/natsx":
			t.Errorf("audit imports %s: only reason and natsx are allowed", pkg)
		}
	}
}
