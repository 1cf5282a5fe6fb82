package core

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/reason"
)

// acceptLedger accepts every key, and is still called: the benchmark pays
// for the call and the key, not for a network round trip.
type acceptLedger struct{}

func (acceptLedger) Consume(context.Context, LedgerKey, time.Duration, LedgerEntry) error { return nil }

// benchPool pre-signs n distinct DERIVED-shaped POSTs with a 1 KiB body, so
// every iteration is a full allow and signing stays out of the measurement.
func benchPool(b *testing.B, f *fixture, n int) []*Request {
	body := make([]byte, 1024)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	pool := make([]*Request, n)
	for i := range pool {
		po := passportOptions()
		po.JTI = fmt.Sprintf("bench-%06d", i)
		c := derivedCall()
		c.body = body
		c.nonce = fmt.Sprintf("%032x", i)
		c.passport = &po
		pool[i] = f.request(c)
	}
	return pool
}

// BenchmarkDecide is the whole pipeline on an allowed request. Compare with
// BenchmarkVerifyTwice: the two Ed25519 verifications it cannot avoid.
func BenchmarkDecide(b *testing.B) {
	f := newFixture(b, func(c *Config) { c.Ledger = acceptLedger{} })
	pool := benchPool(b, f, 256)
	ctx := b.Context()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d := f.p.Decide(ctx, pool[i%len(pool)])
		if d.Reason != reason.Allowed {
			b.Fatalf("Decide = %q (%v)", d.Reason, d.Err)
		}
		i++
	}
}

// BenchmarkVerifyTwice is the floor of a decision: the passport signature
// and the request proof, with crypto/ed25519 on the same messages.
func BenchmarkVerifyTwice(b *testing.B) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	key := seedKey(b)
	tok, err := key.MintPassport(passportOptions())
	if err != nil {
		b.Fatal(err)
	}
	// Message sizes as in Decide: the JWS signing input and a 32-byte digest.
	m1 := []byte(tok[:len(tok)-87])
	m2 := make([]byte, 32)
	s1, s2 := ed25519.Sign(priv, m1), ed25519.Sign(priv, m2)
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub, m1, s1) || !ed25519.Verify(pub, m2, s2) {
			b.Fatal("verify failed")
		}
	}
}
