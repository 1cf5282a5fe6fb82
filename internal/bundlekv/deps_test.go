package bundlekv

import (
	"testing"

	"github.com/tpcluster/tpcluster/internal/deptest"
)

// TestDeps checks bundlekv's direct imports (STYLE §1).
func TestDeps(t *testing.T) {
	deptest.Check(t, deptest.Spec{
		Direct: true,
		Forbidden: []deptest.Rule{
			{Path: "github.com/tpcluster/tpcluster/internal/core", Why: "it serves verified documents; verifierd turns them into a core.Snapshot"},
			{Path: "net/http", Why: "HTTP is internal/proxy's job"},
			{Path: "github.com/nats-io/nats-server/", Why: "it is a client; servers are internal/natsx's job"},
			{Path: "go.opentelemetry.io/otel/sdk", Why: "packages use the OTel API with a provider from config (STYLE §8)"},
		},
		Only:    []string{"github.com/nats-io/nats.go", "go.opentelemetry.io/otel/", "github.com/tpcluster/tpcluster/internal/bundle", "github.com/tpcluster/tpcluster/internal/reason", "github.com/tpcluster/tpcluster/internal/audit", "github.com/tpcluster/tpcluster/internal/natsx", "github.com/tpcluster/tpcluster/internal/retry"},
		OnlyWhy: "only bundle, reason, audit, natsx and retry among ours, nats.go and the OTel API are allowed",
	})
}
