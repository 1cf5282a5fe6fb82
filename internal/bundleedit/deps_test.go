package bundleedit

import (
	"testing"

	"github.com/tpcluster/tpcluster/internal/deptest"
)

// TestDeps keeps bundleedit pure (STYLE §1): it edits documents for
// cmd/bundlepub, and publishing them is internal/bundlekv's job.
func TestDeps(t *testing.T) {
	deptest.Check(t, deptest.Spec{
		Forbidden: []deptest.Rule{
			{Path: "net/http", Why: "documents are edited offline; nothing here talks to a network"},
			{Path: "log/slog", Why: "edits report what changed in Result.Changes; logging belongs to adapters (STYLE §7)"},
			{Path: "github.com/nats-io/", Why: "NATS belongs to internal/bundlekv (STYLE §1)"},
		},
		Only:    []string{"github.com/tpcluster/tpcluster/internal/bundle", "github.com/tpcluster/tpcluster/internal/signerclass", "github.com/tpcluster/tpcluster/internal/keyfile", "github.com/tpcluster/tpcluster/internal/jsontree", "github.com/gowebpki/jcs"},
		OnlyWhy: "only the standard library, bundle, signerclass, keyfile and jsontree are allowed",
	})
}
