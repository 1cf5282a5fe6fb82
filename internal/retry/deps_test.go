package retry

import (
	"testing"

	"github.com/tpcluster/tpcluster/internal/deptest"
)

// TestDeps keeps retry a leaf: the packages that may use it (audit,
// bundlekv) have short allow-lists, and it must add nothing to them.
func TestDeps(t *testing.T) {
	deptest.Check(t, deptest.Spec{
		Direct:  true,
		Only:    []string{},
		OnlyWhy: "the standard library only",
	})
}
