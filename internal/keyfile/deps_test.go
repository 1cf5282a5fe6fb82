package keyfile

import (
	"testing"

	"github.com/tpcluster/tpcluster/internal/deptest"
)

// TestDeps keeps keyfile a leaf: every binary reads keys through it, and
// SPEC §10.3 key handling must not drag a network stack, NATS or a logger
// into verifiers' pure packages (STYLE §1).
func TestDeps(t *testing.T) {
	deptest.Check(t, deptest.Spec{
		Forbidden: []deptest.Rule{
			{Path: "net/http", Why: "key files are local; an HTTP stack has no place in a key parser"},
			{Path: "log/slog", Why: "redaction is done by String, Format and MarshalJSON; logging belongs to adapters (STYLE §7)"},
		},
		Only:    []string{},
		OnlyWhy: "keyfile imports the standard library only",
	})
}
