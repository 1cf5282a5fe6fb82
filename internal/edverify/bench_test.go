package edverify

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// decision is the crypto of one request: the passport's JWS signature by a
// trust material key over its signing input, and the proof by the
// passport's cnf key over the 32-byte transcript digest.
type decision struct {
	trustPub, cnfPub []byte
	trust, cnf       *PublicKey
	signingInput     []byte
	passportSig      []byte
	digest           []byte
	proofSig         []byte
}

// decisions returns n decisions under one trust key and n cnf keys, with a
// signing input of the size of a typical passport (about 600 bytes).
func decisions(b testing.TB, n int) []decision {
	b.Helper()
	tpub, tpriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	trust, err := NewPublicKey(tpub)
	if err != nil {
		b.Fatal(err)
	}
	out := make([]decision, n)
	for i := range out {
		cpub, cpriv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		cnf, err := NewPublicKey(cpub)
		if err != nil {
			b.Fatal(err)
		}
		in := make([]byte, 600)
		rand.Read(in)
		d := sha256.Sum256(in)
		out[i] = decision{
			trustPub: tpub, cnfPub: cpub, trust: trust, cnf: cnf,
			signingInput: in, passportSig: ed25519.Sign(tpriv, in),
			digest: d[:], proofSig: ed25519.Sign(cpriv, d[:]),
		}
	}
	return out
}

// benchDecisions runs verify, one decision's two signatures, over a
// rotation of 64 decisions, failing on a refusal.
func benchDecisions(b *testing.B, verify func(d *decision) bool) {
	ds := decisions(b, 64)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d := &ds[i%len(ds)]
		i++
		if !verify(d) {
			b.Fatal("valid decision refused")
		}
	}
}

func BenchmarkStdlibVerifyTwice(b *testing.B) {
	benchDecisions(b, func(d *decision) bool {
		return ed25519.Verify(d.trustPub, d.signingInput, d.passportSig) && ed25519.Verify(d.cnfPub, d.digest, d.proofSig)
	})
}

func BenchmarkVoiVerifyTwice(b *testing.B) {
	opts := stdlibOptions()
	benchDecisions(b, func(d *decision) bool {
		return voi.VerifyWithOptions(d.trustPub, d.signingInput, d.passportSig, opts) &&
			voi.VerifyWithOptions(d.cnfPub, d.digest, d.proofSig, opts)
	})
}

func BenchmarkVoiExpandedVerifyTwice(b *testing.B) {
	benchDecisions(b, func(d *decision) bool {
		return d.trust.Verify(d.signingInput, d.passportSig) && d.cnf.Verify(d.digest, d.proofSig)
	})
}

// BenchmarkVoiExpandedCnfPerRequest is the expanded verifier with the
// trust key cached and the cnf key parsed for every request (no LRU).
func BenchmarkVoiExpandedCnfPerRequest(b *testing.B) {
	benchDecisions(b, func(d *decision) bool {
		cnf, err := NewPublicKey(d.cnfPub)
		return err == nil && d.trust.Verify(d.signingInput, d.passportSig) && cnf.Verify(d.digest, d.proofSig)
	})
}

func BenchmarkNewPublicKey(b *testing.B) {
	ds := decisions(b, 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewPublicKey(ds[0].cnfPub); err != nil {
			b.Fatal(err)
		}
	}
}
