package readiness

import (
	"testing"

	"github.com/tpcluster/tpcluster/internal/deptest"
)

// TestDeps: readiness is pure; the node wraps its NATS and HTTP parts into
// checks, so it never needs them itself.
func TestDeps(t *testing.T) {
	deptest.Check(t, deptest.Spec{
		Forbidden: []deptest.Rule{
			{Path: "net/http", Why: "proxy serves readyz; readiness only answers it"},
			{Path: "github.com/nats-io/", Why: "NATS reaches readiness as a Check"},
		},
	})
}
