package edverify

import (
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/oasisprotocol/curve25519-voi/curve"
	"github.com/oasisprotocol/curve25519-voi/curve/scalar"
)

// vector is one (key, message, signature) triple and where it came from.
type vector struct {
	name string
	pub  []byte
	msg  []byte
	sig  []byte
}

// speccheckVectors reads the twelve cases of "Taming the many EdDSAs"
// (Chalkias, Garillot, Nikolaenko), from novifinancial/ed25519-speccheck
// scripts/cases.json at 336651ba7f1c, as shipped in curve25519-voi's
// testdata. It fails, never skips, if the file is missing.
func speccheckVectors(t testing.TB) []vector {
	t.Helper()
	b, err := os.ReadFile("testdata/speccheck_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Message   string `json:"message"`
		PublicKey string `json:"pub_key"`
		Signature string `json:"signature"`
	}
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatalf("testdata/speccheck_cases.json: %v", err)
	}
	var vs []vector
	for i, c := range cases {
		vs = append(vs, vector{
			name: fmt.Sprintf("speccheck/%d", i),
			pub:  mustHex(t, c.PublicKey),
			msg:  mustHex(t, c.Message),
			sig:  mustHex(t, c.Signature),
		})
	}
	return vs
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

// nonCanonicalEncodings returns every 32-byte string whose y is at least p
// (y = p+i for i < 19, either sign bit) and the two "negative zero"
// encodings (x = 0 with the sign bit set).
func nonCanonicalEncodings() [][]byte {
	var out [][]byte
	for i := range 19 {
		for _, sign := range []byte{0, 0x80} {
			// p + i = 2^255 - 19 + i, little-endian.
			var e [32]byte
			e[0] = byte(0xed + i) // 0xed + 18 = 0xff, no carry
			for j := 1; j < 31; j++ {
				e[j] = 0xff
			}
			e[31] = 0x7f | sign
			out = append(out, e[:])
		}
	}
	negZero1 := make([]byte, 32) // y = 1, x = -0
	negZero1[0], negZero1[31] = 1, 0x80
	negZeroM1 := mustHexNoT("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff") // y = -1, x = -0
	return append(out, negZero1, negZeroM1)
}

func mustHexNoT(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err) // constant input in tests
	}
	return b
}

// signer holds an RFC 8032 key split into the parts needed to craft
// signatures crypto/ed25519 never makes.
type signer struct {
	a      scalar.Scalar // secret scalar
	prefix []byte
	A      curve.EdwardsPoint
}

func newSigner(t testing.TB, seed byte) *signer {
	t.Helper()
	h := sha512.Sum512(append(make([]byte, 31), seed))
	h[0] &= 248
	h[31] &= 127
	h[31] |= 64
	var s signer
	if _, err := s.a.SetBytesModOrder(h[:32]); err != nil {
		t.Fatal(err)
	}
	s.prefix = h[32:]
	s.A.MulBasepoint(curve.ED25519_BASEPOINT_TABLE, &s.a)
	return &s
}

func encode(p *curve.EdwardsPoint) []byte {
	var c curve.CompressedEdwardsY
	c.SetEdwardsPoint(p)
	return c[:]
}

func hram(t testing.TB, R, A, msg []byte) *scalar.Scalar {
	t.Helper()
	h := sha512.New()
	h.Write(R)
	h.Write(A)
	h.Write(msg)
	k, err := scalar.NewFromBytesModOrderWide(h.Sum(nil))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sign signs msg with the public key A+torA and nonce point [r]B+torR, so
// torsion components can be put into A or R. With both nil it is RFC 8032
// signing (r derived from the prefix).
func (s *signer) sign(t testing.TB, msg []byte, torA, torR *curve.EdwardsPoint) (pub, sig []byte) {
	t.Helper()
	A := s.A
	if torA != nil {
		A.Add(&A, torA)
	}
	pub = encode(&A)
	rh := sha512.Sum512(append(append([]byte{}, s.prefix...), msg...))
	r, err := scalar.NewFromBytesModOrderWide(rh[:])
	if err != nil {
		t.Fatal(err)
	}
	var R curve.EdwardsPoint
	R.MulBasepoint(curve.ED25519_BASEPOINT_TABLE, r)
	if torR != nil {
		R.Add(&R, torR)
	}
	Renc := encode(&R)
	k := hram(t, Renc, pub, msg)
	var S scalar.Scalar
	S.Mul(k, &s.a)
	S.Add(&S, r)
	sig = make([]byte, 64)
	copy(sig, Renc)
	if err := S.ToBytes(sig[32:]); err != nil {
		t.Fatal(err)
	}
	return pub, sig
}

// addL returns S + L as 32 little-endian bytes: the same scalar mod L, a
// non-canonical encoding crypto/ed25519 must refuse.
func addL(s []byte) []byte {
	l := [32]byte{
		0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
	}
	out := make([]byte, 32)
	var carry uint16
	for i := range 32 {
		v := uint16(s[i]) + uint16(l[i]) + carry
		out[i] = byte(v)
		carry = v >> 8
	}
	return out
}

// edgeVectors returns the speccheck cases and crafted ones: non-canonical S,
// every non-canonical encoding as A and as R, small-order and mixed-order A
// and R, wrong lengths. Their expected result is crypto/ed25519's.
func edgeVectors(t testing.TB) []vector {
	t.Helper()
	vs := speccheckVectors(t)
	s := newSigner(t, 1)
	msg := []byte("tpcluster edverify edge case")
	pub, sig := s.sign(t, msg, nil, nil)
	if !ed25519.Verify(pub, msg, sig) {
		t.Fatal("crafted RFC 8032 signature does not verify with crypto/ed25519")
	}
	vs = append(vs, vector{"valid", pub, msg, sig})
	vs = append(vs, vector{"s_plus_L", pub, msg, append(append([]byte{}, sig[:32]...), addL(sig[32:])...)})
	hi := append([]byte{}, sig...)
	hi[63] |= 0xe0
	vs = append(vs, vector{"s_high_bits", pub, msg, hi})
	vs = append(vs, vector{"sig_short", pub, msg, sig[:63]})
	vs = append(vs, vector{"sig_long", pub, msg, append(append([]byte{}, sig...), 0)})
	vs = append(vs, vector{"sig_empty", pub, msg, nil})
	for i, enc := range nonCanonicalEncodings() {
		vs = append(vs, vector{fmt.Sprintf("noncanonical_A/%d", i), enc, msg, sig})
		bad := append(append([]byte{}, enc...), sig[32:]...)
		vs = append(vs, vector{fmt.Sprintf("noncanonical_R/%d", i), pub, msg, bad})
	}
	for i, tor := range curve.EIGHT_TORSION {
		if i == 0 {
			continue
		}
		// Torsion in R: only the cofactored equation accepts it.
		p, sg := s.sign(t, msg, nil, tor)
		vs = append(vs, vector{fmt.Sprintf("mixed_order_R/%d", i), p, msg, sg})
		// Torsion in A: accepted by crypto/ed25519 only when [k]T = O.
		p, sg = s.sign(t, msg, tor, nil)
		vs = append(vs, vector{fmt.Sprintf("mixed_order_A/%d", i), p, msg, sg})
		// Small-order R in place of the signature's R.
		sr := append(encode(tor), sig[32:]...)
		vs = append(vs, vector{fmt.Sprintf("small_order_R/%d", i), pub, msg, sr})
	}
	// Small-order A with forged signatures: with S = 0, crypto/ed25519
	// accepts R = -[k]A, which some R among the eight small-order points
	// satisfies for some messages.
	for i, tor := range curve.EIGHT_TORSION {
		A := encode(tor)
		for j, rt := range curve.EIGHT_TORSION {
			for m := range 2 {
				var R curve.EdwardsPoint
				R.Neg(rt)
				fs := append(encode(&R), make([]byte, 32)...)
				msg := fmt.Appendf(nil, "forged %d", m)
				vs = append(vs, vector{fmt.Sprintf("small_order_A/%d/R%d/m%d", i, j, m), A, msg, fs})
			}
		}
	}
	return vs
}

// curveTorsion returns the point [i]T of the eight-torsion subgroup
// (order 8 for odd i, 4 for i = 2 or 6, 2 for i = 4).
func curveTorsion(i int) *curve.EdwardsPoint { return curve.EIGHT_TORSION[i] }
