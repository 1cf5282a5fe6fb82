package ledger

import (
	"testing"

	"github.com/tpcluster/tpcluster/internal/deptest"
)

// TestDeps checks the ledger's direct imports (STYLE §1: for adapters the
// rule is about direct imports; nats.go itself pulls in net/http for
// websockets).
func TestDeps(t *testing.T) {
	deptest.Check(t, deptest.Spec{
		Direct: true,
		Forbidden: []deptest.Rule{
			{Path: "net/http", Why: "it knows keys and TTLs, not requests; HTTP is internal/proxy's job"},
			{Path: "github.com/nats-io/nats-server/", Why: "it is a client; servers are internal/natsx's job"},
			{Path: "go.opentelemetry.io/otel/sdk", Why: "packages use the OTel API with a provider from config, never the SDK or the global (STYLE §8)"},
		},
		Only:    []string{"github.com/nats-io/nats.go", "go.opentelemetry.io/otel/", "github.com/tpcluster/tpcluster/internal/core", "github.com/tpcluster/tpcluster/internal/natsx", "github.com/tpcluster/tpcluster/internal/retry"},
		OnlyWhy: "only core (the contract), natsx and retry among ours, nats.go and the OTel API are allowed",
	})
}
