package bundle

import (
	"bytes"
	"testing"
	"time"

	"github.com/gowebpki/jcs"
)

// FuzzParseBeacon: no input panics; a beacon that parses verified under the
// beacon key, and flipping any one byte of it never yields a different
// accepted beacon (the signature covers everything that is read).
func FuzzParseBeacon(f *testing.F) {
	k := testKey(f, 7, "beacon-fuzz")
	bk, vk := NewBeaconSigningKey(k), NewBeaconVerifyKey(k.Public())
	p, err := ParsePolicy([]byte(basePolicy), Options{AllowUnsigned: true, ModTime: testModTime})
	if err != nil {
		f.Fatal(err)
	}
	tm, err := ParseTrustMaterial([]byte(trustDoc(f)), Options{AllowUnsigned: true, ModTime: testModTime})
	if err != nil {
		f.Fatal(err)
	}
	good, err := SignBeacon(p, tm, testModTime.Add(time.Minute), bk, "local://fuzz")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, 0)
	f.Add([]byte(`{"version":"trustplane-freshness-v1"}`), 3)
	f.Fuzz(func(t *testing.T, data []byte, flip int) {
		b, err := ParseBeacon(data, []BeaconVerifyKey{vk})
		if err != nil {
			return
		}
		if len(data) == 0 {
			t.Fatal("empty beacon accepted")
		}
		i := flip % len(data)
		if i < 0 {
			i = -i
		}
		mutated := bytes.Clone(data)
		mutated[i] ^= 0x01
		b2, err := ParseBeacon(mutated, []BeaconVerifyKey{vk})
		if err == nil && (b2.PolicySHA256 != b.PolicySHA256 || b2.TrustSHA256 != b.TrustSHA256 ||
			b2.Sequence != b.Sequence || !b2.IssuedAt.Equal(b.IssuedAt)) {
			t.Fatalf("a one-byte change at %d was accepted with different content", i)
		}
	})
}

// FuzzEnvelope: any JSON object signs; the signed bytes are already RFC
// 8785 canonical (signing twice gives the same bytes); they verify; and a
// signed document whose content changes no longer verifies.
func FuzzEnvelope(f *testing.F) {
	k := testKey(f, 9, "env-fuzz")
	sk, vk := NewSigningKey(k), NewVerifyKey(k.Public())
	f.Add([]byte(basePolicy))
	f.Add([]byte(`{"a":1,"b":[true,false,null],"c":{"d":"\u00e9\ud83d\ude00"},"e":1e21,"f":-0.0}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		signed, err := Sign(doc, sk, "local://fuzz")
		if err != nil {
			return // not a JSON object this package accepts
		}
		canon, err := jcs.Transform(signed)
		if err != nil {
			t.Fatalf("signed output is not JSON: %v", err)
		}
		if !bytes.Equal(canon, signed) {
			t.Fatalf("signed output is not in RFC 8785 form:\n%s\n%s", signed, canon)
		}
		if err := Verify(signed, []VerifyKey{vk}); err != nil {
			t.Fatalf("Verify(Sign(doc)) = %v", err)
		}
		again, err := Sign(signed, sk, "local://fuzz")
		if err != nil || !bytes.Equal(again, signed) {
			t.Fatalf("signing the signed document changed it (%v)", err)
		}
		// Change the content under the signature: add a member.
		tampered := append(bytes.Clone(signed[:len(signed)-1]), []byte(`,"zz_tamper":1}`)...)
		if err := Verify(tampered, []VerifyKey{vk}); err == nil {
			t.Fatal("a document with an added member still verifies")
		}
	})
}
