package bundleedit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
)

// testKey returns a deterministic key whose seed is n repeated.
func testKey(t testing.TB, n byte, kid string) *keyfile.PrivateKey {
	t.Helper()
	k, err := keyfile.FromSeed(bytes.Repeat([]byte{n}, ed25519.SeedSize), kid)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func b64(k *keyfile.PrivateKey) string { return base64.RawURLEncoding.EncodeToString(k.Public().Key) }

// The test world: issuer A with key a-1 admitted as subject_exact
// "svc:a" on orders.create and orders.get; issuer B with key b-1 admitted
// by prefix "svc:b/" on orders.get. The policy carries the informational
// members a verifier ignores, which an edit must keep.
const (
	issA = "https://a.example"
	issB = "https://b.example"
)

func testDocs(t testing.TB) (policy, trust []byte) {
	t.Helper()
	policy = []byte(`{
  "version": "trustplane-bundle-v1",
  "kind": "policy_runtime_bundle",
  "contract_metadata": {"note": "kept <as is>"},
  "trust_domain": "example.local",
  "sequence": 7,
  "issued_at": "2026-01-01T00:00:00Z",
  "apis": [{"api_id": "orders-api", "audience": "orders-api"}],
  "route_groups": [{"route_group_id": "orders", "api_id": "orders-api", "routes": [
    {"route_id": "orders.create", "method": "POST", "path_template": "/v1/orders", "freshness_class": "offline-ok",
     "allowed_sources": [
       {"source_type": "software_jwks", "issuer": "https://a.example", "trust_domain": "example.local", "subject_exact": "svc:a", "required_key_binding": "software"}]},
    {"route_id": "orders.get", "method": "GET", "path_template": "/v1/orders/{id}", "max_staleness_seconds": 300, "freshness_class": "bounded",
     "allowed_sources": [
       {"source_type": "software_jwks", "issuer": "https://a.example", "trust_domain": "example.local", "subject_exact": "svc:a", "required_key_binding": "software"},
       {"source_type": "software_jwks", "issuer": "https://b.example", "trust_domain": "example.local", "subject_prefix": "svc:b/", "required_key_binding": "software"}]}]}],
  "scopes": [{"scope": "orders:read"}],
  "default_required_key_binding": "software",
  "revocations": []
}`)
	trust = []byte(`{
  "version": "trustplane-trust-material-v1",
  "kind": "trust_material",
  "sequence": 4,
  "issued_at": "2026-01-01T00:00:00Z",
  "issuers": [
    {"issuer": "https://a.example", "trust_domain": "example.local", "source_type": "software_jwks",
     "keys": [{"kid": "a-1", "alg": "EdDSA", "public_key_b64url": "` + b64(testKey(t, 1, "")) + `", "status": "active"}]},
    {"issuer": "https://b.example", "trust_domain": "example.local", "source_type": "software_jwks",
     "keys": [{"kid": "b-1", "alg": "EdDSA", "public_key_b64url": "` + b64(testKey(t, 2, "")) + `", "status": "active"}]}
  ]
}`)
	return policy, trust
}

// signedLoad signs both documents with a fresh bundle key and loads them as
// a verifier would.
func signedLoad(t testing.TB, policy, trust []byte) (*bundle.Policy, *bundle.TrustMaterial) {
	t.Helper()
	k := testKey(t, 9, "bundle-1")
	seq := int64(100)
	now := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	o := SignOptions{Header: Header{Sequence: &seq, IssuedAt: &now}}
	ps, _, err := Sign(policy, k, o)
	if err != nil {
		t.Fatalf("sign policy: %v", err)
	}
	ts, _, err := Sign(trust, k, o)
	if err != nil {
		t.Fatalf("sign trust material: %v", err)
	}
	opts := bundle.Options{Keys: []bundle.VerifyKey{bundle.NewVerifyKey(k.Public())}}
	p, err := bundle.ParsePolicy(ps, opts)
	if err != nil {
		t.Fatal(err)
	}
	tm, err := bundle.ParseTrustMaterial(ts, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p, tm
}

// admits reports whether route id has a source for iss with subject sub.
func admits(p *bundle.Policy, id, iss, sub string) bool {
	r := p.RouteByID(id)
	if r == nil {
		return false
	}
	for _, s := range r.Sources {
		if s.Issuer == iss && (s.SubjectExact == sub || (s.SubjectPrefix != "" && len(sub) >= len(s.SubjectPrefix) && sub[:len(s.SubjectPrefix)] == s.SubjectPrefix)) {
			return true
		}
	}
	return false
}
