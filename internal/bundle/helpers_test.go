package bundle

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/keyfile"
)

var testModTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testKey(t testing.TB, seedByte byte, kid string) *keyfile.PrivateKey {
	t.Helper()
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = seedByte + byte(i)
	}
	k, err := keyfile.FromSeed(seed, kid)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// basePolicy is a valid unsigned policy bundle exercising most members.
const basePolicy = `{
  "version": "trustplane-bundle-v1",
  "kind": "policy_runtime_bundle",
  "trust_domain": "example.local",
  "sequence": 3,
  "issued_at": "2026-11-23T10:00:00Z",
  "apis": [{"api_id": "orders-api", "audience": "orders-api", "base_url": "https://orders.example"},
           {"api_id": "admin-api", "audience": "admin"}],
  "route_groups": [
    {"route_group_id": "orders", "api_id": "orders-api", "routes": [
      {"route_id": "orders.create", "method": "POST", "path_template": "/v1/orders",
       "allowed_sources": [{"source_type": "software_jwks", "issuer": "https://issuer.example",
         "trust_domain": "example.local", "subject_exact": "spiffe://example.local/workload/orders",
         "context_policy": {"max_txn_value": "1000.00", "required_tool_name": "t"}}],
       "freshness_class": "offline-ok", "signed_headers": {"required": ["Idempotency-Key"], "ignore": ["x-debug"]},
       "body_hash_from_gateway": true, "query_strict": true, "risk": "high", "required_key_binding": "remote_kms"},
      {"route_id": "orders.get", "method": "GET", "path_template": "/v1/orders/{id}",
       "allowed_sources": [{"source_type": "oidc_jwks", "issuer": "https://issuer.example",
         "trust_domain": "example.local", "subject_prefix": "svc:", "required_key_binding": "hardware_local",
         "provenance_policy": {"profile": "p"}}],
       "audience": "orders-read", "max_staleness_seconds": 60}
    ]},
    {"route_group_id": "admin", "api_id": "admin-api", "routes": [
      {"route_id": "admin.any", "method": "GET", "path_template": "/admin/*",
       "allowed_sources": [{"source_type": "spiffe_spire", "issuer": "https://spire.example",
         "trust_domain": "example.local", "subject_prefix": "spiffe://example.local/"}],
       "freshness_class": "weird"}
    ]}
  ],
  "scopes": [{"anything": true}],
  "contract_metadata": {"x": 1},
  "default_required_key_binding": "software",
  "default_freshness_class": "bounded",
  "default_max_staleness_seconds": 300,
  "revocations": [{"type": "jti", "value": "j1"}, {"type": "kid", "value": "k1", "issuer": "https://issuer.example", "until": "2027-01-01T00:00:00Z"}],
  "revocation_feed": {"freshness_class": "bounded"},
  "provenance_policy": {"required_posture": "ok"}
}`

// edit decodes doc, applies f and re-encodes it.
func edit(t testing.TB, doc string, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(stringsReader(doc))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	f(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// route returns route_groups[g].routes[r] of a decoded document.
func route(m map[string]any, g, r int) map[string]any {
	return m["route_groups"].([]any)[g].(map[string]any)["routes"].([]any)[r].(map[string]any)
}

func source(m map[string]any, g, r, s int) map[string]any {
	return route(m, g, r)["allowed_sources"].([]any)[s].(map[string]any)
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }
