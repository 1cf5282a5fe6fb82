package edverify

import (
	"testing"

	"github.com/tpcluster/tpcluster/internal/deptest"
)

// TestDeps keeps edverify pure (STYLE §1): it is called on core's hot path,
// so it does crypto and nothing else.
func TestDeps(t *testing.T) {
	deptest.Check(t, deptest.Spec{
		Forbidden: []deptest.Rule{
			{Path: "net/http", Why: "edverify verifies signatures; adapters speak HTTP"},
			{Path: "log/slog", Why: "edverify answers with a bool; callers log"},
			{Path: "github.com/nats-io/", Why: "no network on the verification path"},
			{Path: "github.com/tpcluster/tpcluster/internal/core", Why: "core adopts edverify, not the reverse"},
		},
	})
}
