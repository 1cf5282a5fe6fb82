package bundle

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestBeacon(t *testing.T) {
	p, err := ParsePolicy([]byte(basePolicy), Options{AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	tm, err := ParseTrustMaterial([]byte(trustDoc(t)), Options{AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	bk := testKey(t, 5, "beacon-1")
	at := time.Date(2026, 11, 23, 10, 0, 2, 500, time.UTC)
	doc, err := SignBeacon(p, tm, at, NewBeaconSigningKey(bk), "bundlepub")
	if err != nil {
		t.Fatal(err)
	}
	keys := []BeaconVerifyKey{NewBeaconVerifyKey(bk.Public())}
	b, err := ParseBeacon(doc, keys)
	if err != nil {
		t.Fatalf("ParseBeacon = %v", err)
	}
	if !b.IssuedAt.Equal(at) || b.Sequence != 3 || !b.Covers(p, tm) {
		t.Errorf("beacon = %+v", b)
	}
	other, _ := ParsePolicy(edit(t, basePolicy, func(m map[string]any) {}), Options{AllowUnsigned: true})
	if b.Covers(other, tm) {
		t.Error("beacon covers a policy with other bytes")
	}

	// A bundle-signing key is not a beacon key: its signature names a kid
	// the beacon keys do not have. (And NewBeaconVerifyKey takes what a
	// VerifyKey would: the roles are kept apart by type, not by bytes.)
	bundleKey := testKey(t, 1, "bundle-key")
	forged, err := Sign(doc, NewSigningKey(bundleKey), "bundlepub")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseBeacon(forged, keys); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("beacon signed by a bundle key = %v, want ErrUnknownKey", err)
	}
	tampered := strings.Replace(string(doc), `"sequence":3`, `"sequence":4`, 1)
	if _, err := ParseBeacon([]byte(tampered), keys); !errors.Is(err, ErrBadSignature) {
		t.Errorf("tampered beacon = %v, want ErrBadSignature", err)
	}
	unsigned := `{"version":"trustplane-freshness-v1","policy_sha256":"` + p.SHA256 + `","trust_sha256":"` + tm.SHA256 + `","sequence":3,"issued_at":"2026-11-23T10:00:00Z"}`
	if _, err := ParseBeacon([]byte(unsigned), keys); !errors.Is(err, ErrUnsigned) {
		t.Errorf("unsigned beacon = %v, want ErrUnsigned", err)
	}
	bad, _ := Sign([]byte(strings.Replace(unsigned, p.SHA256, strings.ToUpper(p.SHA256), 1)), NewSigningKey(bk), "x")
	if _, err := ParseBeacon(bad, keys); err == nil || !strings.Contains(err.Error(), "policy_sha256: not 64 lowercase hex") {
		t.Errorf("upper-case digest = %v", err)
	}
}
