package edverify

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
)

// stdlibVerify is the oracle: crypto/ed25519.Verify, guarded against its
// panic on a key of the wrong length.
func stdlibVerify(pub, msg, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize {
		return false
	}
	return ed25519.Verify(pub, msg, sig)
}

// ourVerify is NewPublicKey followed by Verify; a key NewPublicKey refuses
// verifies nothing.
func ourVerify(pub, msg, sig []byte) bool {
	k, err := NewPublicKey(pub)
	if err != nil {
		return false
	}
	return k.Verify(msg, sig)
}

func TestNewPublicKey(t *testing.T) {
	valid, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// y = 2 is not the y of any curve point (no x satisfies the equation).
	notOnCurve := make([]byte, 32)
	notOnCurve[0] = 2
	tests := []struct {
		name    string
		raw     []byte
		wantErr error  // a sentinel, or nil
		wantMsg string // a substring of the error, or ""
	}{
		{"valid", valid, nil, ""},
		{"empty", nil, nil, "public key is 0 bytes, want 32"},
		{"short", valid[:31], nil, "public key is 31 bytes, want 32"},
		{"long", append(bytes.Clone(valid), 0), nil, "public key is 33 bytes, want 32"},
		{"not_on_curve", notOnCurve, errNotOnCurve, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := NewPublicKey(tt.raw)
			switch {
			case tt.wantErr == nil && tt.wantMsg == "":
				if err != nil {
					t.Fatalf("NewPublicKey(%s) = %v, want no error", tt.name, err)
				}
				if !bytes.Equal(k.Bytes(), tt.raw) {
					t.Errorf("Bytes() = %x, want %x", k.Bytes(), tt.raw)
				}
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("NewPublicKey(%s) = %v, want %v", tt.name, err, tt.wantErr)
			case tt.wantMsg != "" && (err == nil || !strings.Contains(err.Error(), tt.wantMsg)):
				t.Errorf("NewPublicKey(%s) = %v, want an error containing %q", tt.name, err, tt.wantMsg)
			}
		})
	}
	if stdlibVerify(notOnCurve, []byte("m"), make([]byte, 64)) {
		t.Error("crypto/ed25519 accepts a signature under a key that is not a point")
	}
}

// TestVerifyEdgeCases compares Verify with crypto/ed25519 on every edge case
// of edgeVectors, and checks that the vectors exercise both answers.
func TestVerifyEdgeCases(t *testing.T) {
	var accepted, rejected int
	for _, v := range edgeVectors(t) {
		want := stdlibVerify(v.pub, v.msg, v.sig)
		if got := ourVerify(v.pub, v.msg, v.sig); got != want {
			t.Errorf("Verify(%s) = %v, want %v (crypto/ed25519)", v.name, got, want)
		}
		if want {
			accepted++
		} else {
			rejected++
		}
	}
	if accepted < 10 || rejected < 10 {
		t.Errorf("edge vectors: %d accepted, %d rejected by crypto/ed25519; want both sides covered", accepted, rejected)
	}
}

func TestVerifyRandom(t *testing.T) {
	for i := range 200 {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		msg := make([]byte, i)
		rand.Read(msg)
		sig := ed25519.Sign(priv, msg)
		k, err := NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		if !k.Verify(msg, sig) {
			t.Fatalf("Verify(random %d) = false, want true", i)
		}
		bad := bytes.Clone(sig)
		bad[i%64] ^= 1 << (i % 8)
		if got, want := k.Verify(msg, bad), stdlibVerify(pub, msg, bad); got != want {
			t.Fatalf("Verify(random %d, bit flipped) = %v, want %v", i, got, want)
		}
	}
}

func TestVerifyNil(t *testing.T) {
	var k *PublicKey
	if k.Verify([]byte("m"), make([]byte, 64)) {
		t.Error("(*PublicKey)(nil).Verify = true, want false")
	}
}

// FuzzVerifyVsStdlib checks that NewPublicKey and Verify accept exactly what
// crypto/ed25519 accepts: on the raw input, and on a real signature of msg
// (by a key seeded from pub) with sig's bytes XORed in, which reaches the
// near-valid inputs random bytes never do.
func FuzzVerifyVsStdlib(f *testing.F) {
	for _, v := range edgeVectors(f) {
		f.Add(v.pub, v.msg, v.sig)
	}
	f.Fuzz(func(t *testing.T, pub, msg, sig []byte) {
		if got, want := ourVerify(pub, msg, sig), stdlibVerify(pub, msg, sig); got != want {
			t.Fatalf("Verify(%x, %x, %x) = %v, crypto/ed25519 says %v", pub, msg, sig, got, want)
		}
		seed := make([]byte, ed25519.SeedSize)
		copy(seed, pub)
		priv := ed25519.NewKeyFromSeed(seed)
		real := ed25519.Sign(priv, msg)
		for i := range min(len(sig), len(real)) {
			real[i] ^= sig[i]
		}
		rpub := priv.Public().(ed25519.PublicKey)
		if got, want := ourVerify(rpub, msg, real), stdlibVerify(rpub, msg, real); got != want {
			t.Fatalf("Verify(%x, %x, %x) = %v, crypto/ed25519 says %v", rpub, msg, real, got, want)
		}
	})
}
