package transcript

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps the package pure (STYLE §1): it rebuilds transcripts on the
// verifier's hot path and is shared by caller and verifier, so it must not
// pull in an HTTP stack, a NATS client or a logger.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	forbidden := map[string]string{
		"net/http": "transcript takes a plain header map; the HTTP adapter (internal/proxy) owns net/http",
		"log/slog": "transcript does not log; its callers log outcomes",
	}
	for _, dep := range strings.Fields(string(out)) {
		if why, ok := forbidden[dep]; ok {
			t.Errorf("transcript imports %s: %s", dep, why)
		}
		if strings.Contains(dep, "nats-io/") {
			t.Errorf("transcript imports %s: transcript is a pure package; NATS belongs to the adapters", dep)
		}
	}
}
