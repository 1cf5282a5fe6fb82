package passport

import (
	"testing"

	"github.com/tpcluster/tpcluster/internal/deptest"
)

// TestDeps keeps the package pure (STYLE §1): it sits on the request hot
// path of core, which must stay free of transports and loggers.
func TestDeps(t *testing.T) {
	deptest.Check(t, deptest.Spec{
		Forbidden: []deptest.Rule{
			{Path: "net/http", Why: "HTTP belongs to internal/proxy; passport only parses bytes"},
			{Path: "github.com/nats-io/", Why: "NATS belongs to the adapters (ledger, audit, bundlekv)"},
			{Path: "log/slog", Why: "passport never logs: a passport is a bearer credential"},
			{Path: "github.com/go-jose/", Why: "go-jose is the tests' differential oracle, not the parser"},
			{Path: "encoding/json", Why: "the hot path has its own allocation-free JSON reader"},
			{Path: "github.com/tpcluster/tpcluster/internal/core", Why: "core depends on passport, not the reverse"},
		},
	})
}
