package core

import (
	"bytes"
	"sync"
	"sync/atomic"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/edverify"
)

// trustKeys caches the expanded form of each key of one trust material, so
// the passport signature (step 9) is checked with precomputed tables: about
// a quarter less CPU than crypto/ed25519, with its exact answers
// (internal/edverify, docs/PERFORMANCE.md).
type trustKeys struct {
	tm *bundle.TrustMaterial
	m  sync.Map // *bundle.Key -> *edverify.PublicKey (nil: not a curve point)
}

// keyCache holds the trustKeys of the current trust material; a new trust
// material replaces it whole.
type keyCache struct {
	cur atomic.Pointer[trustKeys]
}

// verifier returns the expanded form of k, a key of tm. It returns nil for a
// key that is not a curve point: crypto/ed25519 would reject every
// signature under it, and a nil verifier verifies nothing.
func (c *keyCache) verifier(tm *bundle.TrustMaterial, k *bundle.Key) *edverify.PublicKey {
	tk := c.cur.Load()
	if tk == nil || tk.tm != tm {
		next := &trustKeys{tm: tm}
		if c.cur.CompareAndSwap(tk, next) {
			tk = next
		} else if tk = c.cur.Load(); tk == nil || tk.tm != tm {
			return expand(k.PublicKey) // a concurrent swap: use it uncached
		}
	}
	if v, ok := tk.m.Load(k); ok {
		return v.(*edverify.PublicKey)
	}
	v, _ := tk.m.LoadOrStore(k, expand(k.PublicKey))
	return v.(*edverify.PublicKey)
}

// cnfVerifier returns a verifier for the passport's cnf key. A self-issued
// software passport's cnf key is its trust-material key, already expanded;
// any other is expanded for this request (still cheaper than
// crypto/ed25519's own per-call decoding).
func cnfVerifier(cnf []byte, trustKey []byte, trusted *edverify.PublicKey) *edverify.PublicKey {
	if trusted != nil && bytes.Equal(cnf, trustKey) {
		return trusted
	}
	return expand(cnf)
}

func expand(raw []byte) *edverify.PublicKey {
	k, err := edverify.NewPublicKey(raw)
	if err != nil {
		return nil
	}
	return k
}
