package proxy

import (
	"testing"

	"github.com/tpcluster/tpcluster/internal/deptest"
)

// TestDeps: the HTTP adapter never talks to NATS (STYLE §1); the ledger and
// audit reach it through core and the Record hook.
func TestDeps(t *testing.T) {
	deptest.Check(t, deptest.Spec{
		Forbidden: []deptest.Rule{
			{Path: "github.com/nats-io/", Why: "NATS belongs to ledger, audit and bundlekv"},
		},
	})
}
