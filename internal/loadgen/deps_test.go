package loadgen

import (
	"testing"

	"github.com/tpcluster/tpcluster/internal/deptest"
)

// TestDeps keeps the generator on the caller side (STYLE §1): it must
// judge verifier answers by the wire contract, not by sharing the
// pipeline's code, and it has no business with NATS.
func TestDeps(t *testing.T) {
	deptest.Check(t, deptest.Spec{
		Forbidden: []deptest.Rule{
			{Path: "github.com/tpcluster/tpcluster/internal/core", Why: "a load generator that shares the verifier's code could share its bugs"},
			{Path: "github.com/tpcluster/tpcluster/internal/proxy", Why: "a load generator that shares the verifier's code could share its bugs"},
			{Path: "github.com/nats-io/", Why: "the generator has nothing to do with NATS"},
		},
	})
}
