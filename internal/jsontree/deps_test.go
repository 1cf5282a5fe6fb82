package jsontree

import (
	"testing"

	"github.com/tpcluster/tpcluster/internal/deptest"
)

// TestDeps keeps jsontree a leaf: the bundle loader and editor both parse
// through it.
func TestDeps(t *testing.T) {
	deptest.Check(t, deptest.Spec{
		Only:    []string{},
		OnlyWhy: "jsontree imports the standard library only",
	})
}
