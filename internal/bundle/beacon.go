package bundle

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tpcluster/tpcluster/internal/keyfile"
)

// BeaconVersion is the version of a freshness beacon (SPEC §8.3).
const BeaconVersion = "trustplane-freshness-v1"

// BeaconSigningKey is a beacon private key (--beacon-key): it signs
// freshness beacons and nothing else. It is a distinct type from SigningKey
// so the publishing host's key can never sign policy (SPEC §8.3).
type BeaconSigningKey struct {
	k *keyfile.PrivateKey
}

// NewBeaconSigningKey returns k in its beacon-signing role.
func NewBeaconSigningKey(k *keyfile.PrivateKey) BeaconSigningKey { return BeaconSigningKey{k: k} }

// KID returns the key id written to signed_by.kid.
func (k BeaconSigningKey) KID() string {
	if k.k == nil {
		return ""
	}
	return k.k.KID()
}

// String names the key id only.
func (k BeaconSigningKey) String() string {
	return fmt.Sprintf("bundle.BeaconSigningKey{kid: %q}", k.KID())
}

// BeaconVerifyKey is an accepted beacon public key (--beacon-public-key).
type BeaconVerifyKey struct {
	KID string
	Key ed25519.PublicKey
}

// NewBeaconVerifyKey returns p in its beacon-verifying role.
func NewBeaconVerifyKey(p *keyfile.PublicKey) BeaconVerifyKey {
	return BeaconVerifyKey{KID: p.KID, Key: p.Key}
}

// Beacon is a verified freshness beacon (SPEC §8.3): it says that the policy
// and trust material with these digests were current at IssuedAt.
type Beacon struct {
	PolicySHA256 string // lowercase hex SHA-256 of the policy bundle bytes
	TrustSHA256  string // lowercase hex SHA-256 of the trust material bytes
	Sequence     int64  // the policy bundle's sequence
	IssuedAt     time.Time
	SHA256       string // of the beacon bytes themselves
}

// Covers reports whether b speaks for this pair: only then may its
// IssuedAt advance the view time.
func (b *Beacon) Covers(p *Policy, t *TrustMaterial) bool {
	return p != nil && t != nil && b.PolicySHA256 == p.SHA256 && b.TrustSHA256 == t.SHA256 && b.Sequence == p.Sequence
}

// SignBeacon returns the signed beacon for a pair at issuedAt (written as
// RFC 3339 UTC), in RFC 8785 form.
func SignBeacon(p *Policy, t *TrustMaterial, issuedAt time.Time, k BeaconSigningKey, issuer string) ([]byte, error) {
	if p == nil || t == nil {
		return nil, errors.New("bundle: sign beacon: no policy or trust material")
	}
	doc, err := json.Marshal(map[string]any{
		"version":       BeaconVersion,
		"policy_sha256": p.SHA256,
		"trust_sha256":  t.SHA256,
		"sequence":      p.Sequence,
		"issued_at":     issuedAt.UTC().Format(time.RFC3339Nano),
	})
	if err != nil {
		return nil, fmt.Errorf("bundle: sign beacon: %w", err)
	}
	return sign(doc, k.k, issuer)
}

// ParseBeacon parses and verifies a beacon. Beacons are always signed: the
// development flag for unsigned bundles does not extend to them. Errors wrap
// ErrUnsigned, ErrUnknownKey or ErrBadSignature where those apply.
func ParseBeacon(data []byte, keys []BeaconVerifyKey) (*Beacon, error) {
	b, err := parseBeacon(data, keys)
	if err != nil {
		return nil, fmt.Errorf("bundle: beacon: %w", err)
	}
	return b, nil
}

func parseBeacon(data []byte, keys []BeaconVerifyKey) (*Beacon, error) {
	top, err := parseTree(data)
	if err != nil {
		return nil, err
	}
	pks := make([]pubKey, len(keys))
	for i, k := range keys {
		pks[i] = pubKey{k.KID, k.Key}
	}
	h, err := loadHeader(top, BeaconVersion, "", pks, false, time.Time{})
	if err != nil {
		return nil, err
	}
	doc := object{m: top}
	if err := doc.only("version", "policy_sha256", "trust_sha256", "sequence", "issued_at", "signed_by", "signature"); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	b := &Beacon{Sequence: h.sequence, IssuedAt: h.issuedAt, SHA256: hex.EncodeToString(sum[:])}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"policy_sha256", &b.PolicySHA256}, {"trust_sha256", &b.TrustSHA256}} {
		if *f.dst, err = doc.required(f.name); err != nil {
			return nil, err
		}
		if !isHexDigest(*f.dst) {
			return nil, fmt.Errorf("%s: not 64 lowercase hex digits", f.name)
		}
	}
	return b, nil
}

func isHexDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
