package signer

import (
	"testing"

	"github.com/tpcluster/tpcluster/internal/deptest"
)

// TestDeps keeps the caller side apart from the verifier (STYLE §1): a
// signer that imported core could share a bug with the code it tests, and
// NATS has no place on the caller side.
func TestDeps(t *testing.T) {
	deptest.Check(t, deptest.Spec{
		Forbidden: []deptest.Rule{
			{Path: "github.com/tpcluster/tpcluster/internal/core", Why: "the caller side must not share code with the verifier pipeline it is used to test"},
			{Path: "github.com/nats-io/", Why: "the caller side has nothing to do with NATS"},
		},
	})
}
