package edverify

import (
	"errors"
	"fmt"

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
	return &PublicKey{expanded: exp}, nil
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
