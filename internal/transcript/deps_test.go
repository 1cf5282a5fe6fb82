package transcript

import (
	"testing"

	"github.com/tpcluster/tpcluster/internal/deptest"
)

// TestDeps keeps the package pure (STYLE §1): it rebuilds transcripts on the
// verifier's hot path and is shared by caller and verifier, so it must not
// pull in an HTTP stack, a NATS client or a logger.
func TestDeps(t *testing.T) {
	deptest.Check(t, deptest.Spec{
		Forbidden: []deptest.Rule{
			{Path: "net/http", Why: "transcript takes a plain header map; the HTTP adapter (internal/proxy) owns net/http"},
			{Path: "log/slog", Why: "transcript does not log; its callers log outcomes"},
			{Path: "github.com/nats-io/", Why: "transcript is a pure package; NATS belongs to the adapters"},
		},
	})
}
