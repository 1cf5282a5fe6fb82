package core

import (
	"testing"

	"github.com/tpcluster/tpcluster/internal/deptest"
)

// TestDeps keeps core pure (STYLE §1): the pipeline must stay fast and
// testable without a network, so it imports no HTTP server, no NATS, no
// telemetry and no logger. Adapters bring those.
func TestDeps(t *testing.T) {
	deptest.Check(t, deptest.Spec{
		Forbidden: []deptest.Rule{
			{Path: "net/http", Why: "core decides; internal/proxy speaks HTTP"},
			{Path: "log/slog", Why: "core reports through Decision.Err; adapters log"},
			{Path: "github.com/nats-io/", Why: "the ledger reaches core through the Ledger interface"},
			{Path: "go.opentelemetry.io/otel", Why: "internal/proxy wraps Decide in a span"},
		},
	})
}
