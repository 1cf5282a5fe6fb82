package bundle

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps bundle pure (STYLE §1): verifiers, bundlepub and the
// bundle watcher all load documents through it, and fetching, watching and
// logging are the adapters' jobs.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	allowed := map[string]bool{
		"github.com/tpcluster/tpcluster/internal/bundle":      true,
		"github.com/tpcluster/tpcluster/internal/signerclass": true,
		"github.com/tpcluster/tpcluster/internal/keyfile":     true,
		"github.com/gowebpki/jcs":                             true,
	}
	forbidden := map[string]string{
		"net/http": "documents arrive as bytes; fetching them is internal/bundlekv's job",
		"log/slog": "errors are returned, not logged; logging belongs to adapters (STYLE §7)",
	}
	for line := range strings.Lines(string(out)) {
		pkg, std, _ := strings.Cut(strings.TrimSpace(line), " ")
		if why, bad := forbidden[pkg]; bad {
			t.Errorf("bundle depends on %s: %s", pkg, why)
		}
		switch {
		case strings.HasPrefix(pkg, "github.com/nats-io/"):
			t.Errorf("bundle depends on %s: NATS belongs to internal/bundlekv (STYLE §1)", pkg)
		case std != "true" && !allowed[pkg]:
			t.Errorf("bundle depends on %s: only the standard library, jcs, signerclass and keyfile are allowed", pkg)
		}
	}
}
