package audit

import (
	"testing"

	"github.com/tpcluster/tpcluster/internal/deptest"
)

// TestDeps checks audit's direct imports (STYLE §1).
func TestDeps(t *testing.T) {
	deptest.Check(t, deptest.Spec{
		Direct: true,
		Forbidden: []deptest.Rule{
			{Path: "github.com/tpcluster/tpcluster/internal/core", Why: "verifierd maps decisions to events; audit must not know the pipeline"},
			{Path: "net/http", Why: "HTTP is internal/proxy's job"},
			{Path: "github.com/nats-io/nats-server/", Why: "it is a client; servers are internal/natsx's job"},
			{Path: "go.opentelemetry.io/otel/sdk", Why: "the OTel API with a provider from config only (STYLE §8)"},
		},
		Only:    []string{"github.com/nats-io/nats.go", "go.opentelemetry.io/otel/", "github.com/google/uuid", "github.com/tpcluster/tpcluster/internal/reason", "github.com/tpcluster/tpcluster/internal/natsx", "github.com/tpcluster/tpcluster/internal/retry"},
		OnlyWhy: "only reason, natsx and retry among ours, nats.go, the OTel API and uuid are allowed",
	})
}
