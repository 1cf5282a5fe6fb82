package bundleedit

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps bundleedit pure (STYLE §1): it edits documents for
// cmd/bundlepub, and publishing them is internal/bundlekv's job.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	allowed := map[string]bool{
		"github.com/tpcluster/tpcluster/internal/bundleedit":  true,
		"github.com/tpcluster/tpcluster/internal/bundle":      true,
		"github.com/tpcluster/tpcluster/internal/signerclass": true,
		"github.com/tpcluster/tpcluster/internal/keyfile":     true,
		"github.com/gowebpki/jcs":                             true,
	}
	forbidden := map[string]string{
		"net/http": "documents are edited offline; nothing here talks to a network",
		"log/slog": "edits report what changed in Result.Changes; logging belongs to adapters (STYLE §7)",
	}
	for line := range strings.Lines(string(out)) {
		pkg, std, _ := strings.Cut(strings.TrimSpace(line), " ")
		if why, bad := forbidden[pkg]; bad {
			t.Errorf("bundleedit depends on %s: %s", pkg, why)
		}
		switch {
		case strings.HasPrefix(pkg, "github.com/nats-io/"):
			t.Errorf("bundleedit depends on %s: NATS belongs to internal/bundlekv (STYLE §1)", pkg)
		case std != "true" && !allowed[pkg]:
			t.Errorf("bundleedit depends on %s: only the standard library, bundle, signerclass and keyfile are allowed", pkg)
		}
	}
}
