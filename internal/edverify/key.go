package edverify

import (
	"errors"
	"fmt"

	"github.com/oasisprotocol/curve25519-voi/curve"
	"github.com/oasisprotocol/curve25519-voi/curve/scalar"
	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// Sizes, in bytes, of the inputs this package accepts.
const (
	PublicKeySize = 32
	SignatureSize = 64
)

// errNotOnCurve is returned by NewPublicKey for 32 bytes that decode to no
// curve point. crypto/ed25519 rejects every signature under such a key.
var errNotOnCurve = errors.New("edverify: public key is not an Edwards25519 point")

// PublicKey is an Ed25519 public key decoded once and expanded into the
// precomputed tables curve25519-voi uses to verify faster. Build one per key
// and reuse it: NewPublicKey costs about as much as a fifth of a
// verification, and each PublicKey holds about 1.5 KiB.
//
// A PublicKey is immutable and safe for concurrent use.
type PublicKey struct {
	expanded *voi.ExpandedPublicKey

	// batchable reports that A is canonically encoded and not of small
	// order, the part of the cofactored batch equation's conditions that
	// can be checked once per key (see Batcher).
	batchable bool
}

// stdlibOptions selects crypto/ed25519's acceptance rules: small-order A and
// R allowed, a non-canonical encoding of A allowed (crypto/ed25519 hashes the
// bytes as received), S < L required, and the cofactorless equation compared
// byte for byte against R, which also rejects every non-canonical R.
//
// It is built per call site rather than shared, so no package state exists
// that a caller could change.
func stdlibOptions() *voi.Options {
	return &voi.Options{Verify: &voi.VerifyOptions{
		AllowSmallOrderA:   true,
		AllowSmallOrderR:   true,
		AllowNonCanonicalA: true,
		CofactorlessVerify: true,
	}}
}

// NewPublicKey decodes and expands raw, a 32-byte Ed25519 public key. It
// returns an error for a key of the wrong length or for 32 bytes that are
// not a curve point; crypto/ed25519 would panic on the first and reject
// every signature under the second, so a caller denies in both cases. Keys
// crypto/ed25519 accepts despite a weak encoding (small order, non-canonical
// y) are accepted here too, with the same results from Verify.
func NewPublicKey(raw []byte) (*PublicKey, error) {
	if len(raw) != PublicKeySize {
		return nil, fmt.Errorf("edverify: public key is %d bytes, want %d", len(raw), PublicKeySize)
	}
	exp, err := voi.NewExpandedPublicKey(voi.PublicKey(raw))
	if err != nil {
		return nil, errNotOnCurve
	}
	enc := exp.CompressedY()
	return &PublicKey{
		expanded:  exp,
		batchable: enc.IsCanonicalVartime() && !isSmallOrderEncoding((*[32]byte)(&enc)),
	}, nil
}

// Bytes returns the key's 32-byte encoding, as it was given to NewPublicKey.
func (k *PublicKey) Bytes() []byte {
	b := k.expanded.CompressedY()
	return b[:]
}

// Verify reports whether sig is a valid Ed25519 signature of msg by k, with
// exactly the acceptance rules of crypto/ed25519.Verify (RFC 8032 §5.1.7
// with the cofactorless equation; see FuzzVerifyVsStdlib). A signature of
// the wrong length, or a nil k, verifies nothing; Verify never panics.
func (k *PublicKey) Verify(msg, sig []byte) bool {
	if k == nil || len(sig) != SignatureSize {
		return false
	}
	return voi.VerifyExpandedWithOptions(k.expanded, msg, sig, stdlibOptions())
}

// smallOrderEncodings are the canonical encodings of the eight points of
// order dividing 8, in the order of curve.EIGHT_TORSION (TestSmallOrderTable
// recomputes them). Non-canonical encodings are refused before this table
// is consulted, so it needs no others. It is never written.
var smallOrderEncodings = [8][32]byte{
	{ // identity (order 1)
		0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	},
	{ // order 8
		0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
		0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a,
	},
	{ // order 4
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80,
	},
	{ // order 8
		0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
		0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
	},
	{ // order 2
		0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
	},
	{ // order 8
		0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
		0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x85,
	},
	{ // order 4
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	},
	{ // order 8
		0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
		0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0xfa,
	},
}

func isSmallOrderEncoding(enc *[32]byte) bool {
	for i := range smallOrderEncodings {
		if smallOrderEncodings[i] == *enc {
			return true
		}
	}
	return false
}

// batchSafe reports whether sig under k may go into a cofactored batch: the
// key passed its once-only checks, S is canonical, and R is canonically
// encoded and not of small order. These are byte comparisons, no curve
// arithmetic. Every input crypto/ed25519 treats specially (non-canonical S,
// A or R; small-order A or R) fails here and is verified singly, with the
// standard library's rules.
func batchSafe(k *PublicKey, sig []byte) bool {
	if !k.batchable || len(sig) != SignatureSize {
		return false
	}
	if !scalar.ScMinimalVartime(sig[32:]) {
		return false
	}
	r := curve.CompressedEdwardsY(sig[:32])
	return r.IsCanonicalVartime() && !isSmallOrderEncoding((*[32]byte)(&r))
}
