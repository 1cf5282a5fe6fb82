package bundle

import (
	"testing"

	"github.com/tpcluster/tpcluster/internal/deptest"
)

// TestDeps keeps bundle pure (STYLE §1): verifiers, bundlepub and the
// bundle watcher all load documents through it, and fetching, watching and
// logging are the adapters' jobs.
func TestDeps(t *testing.T) {
	deptest.Check(t, deptest.Spec{
		Forbidden: []deptest.Rule{
			{Path: "net/http", Why: "documents arrive as bytes; fetching them is internal/bundlekv's job"},
			{Path: "log/slog", Why: "errors are returned, not logged; logging belongs to adapters (STYLE §7)"},
			{Path: "github.com/nats-io/", Why: "NATS belongs to internal/bundlekv (STYLE §1)"},
		},
		Only:    []string{"github.com/tpcluster/tpcluster/internal/signerclass", "github.com/tpcluster/tpcluster/internal/keyfile", "github.com/tpcluster/tpcluster/internal/jsontree", "github.com/gowebpki/jcs"},
		OnlyWhy: "only the standard library, jcs, signerclass, keyfile and jsontree are allowed",
	})
}
