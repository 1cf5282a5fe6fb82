package bundle

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/signerclass"
)

func b64(t testing.TB, seed byte) string {
	return base64.RawURLEncoding.EncodeToString(testKey(t, seed, "x").Public().Key)
}

// trustDoc: issuer https://issuer.example with keys
// k-active (seed 10, always), k-retired (seed 11), k-window (seed 12,
// 2026-01-01..2026-12-31); issuer https://solo.example with one key.
func trustDoc(t testing.TB) string {
	return `{"version":"trustplane-trust-material-v1","kind":"trust_material","sequence":7,
 "issued_at":"2026-11-23T10:00:00Z",
 "issuers":[{"issuer":"https://issuer.example","trust_domain":"example.local","source_type":"software_jwks",
   "keys":[{"kid":"k-active","alg":"EdDSA","public_key_b64url":"` + b64(t, 10) + `","status":"active"},
           {"kid":"k-retired","alg":"EdDSA","public_key_b64url":"` + b64(t, 11) + `","status":"retired"},
           {"kid":"k-window","alg":"EdDSA","public_key_b64url":"` + b64(t, 12) + `","status":"active",
            "not_before":"2026-01-01T00:00:00Z","not_after":"2026-12-31T00:00:00Z"}]},
  {"issuer":"https://solo.example","trust_domain":"example.local","source_type":"oidc_jwks",
   "keys":[{"kid":"solo","alg":"EdDSA","public_key_b64url":"` + b64(t, 13) + `","status":"active"}]}]}`
}

func TestParseTrustMaterial(t *testing.T) {
	tm, err := ParseTrustMaterial([]byte(trustDoc(t)), Options{AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	if tm.Sequence != 7 || tm.Signed || len(tm.Issuers) != 2 || len(tm.SHA256) != 64 {
		t.Errorf("trust material = %+v", tm)
	}
	is := tm.Issuers["https://issuer.example"]
	if is.TrustDomain != "example.local" || is.SourceType != "software_jwks" || len(is.Keys) != 3 || is.Keys[1].Active {
		t.Errorf("issuer = %+v", is)
	}
	if _, err := ParseTrustMaterial([]byte(trustDoc(t)), Options{}); !errors.Is(err, ErrUnsigned) {
		t.Errorf("unsigned without AllowUnsigned = %v, want ErrUnsigned", err)
	}
	k := testKey(t, 1, "bk")
	signed, err := Sign([]byte(trustDoc(t)), NewSigningKey(k), "https://bundles.example")
	if err != nil {
		t.Fatal(err)
	}
	tm, err = ParseTrustMaterial(signed, Options{Keys: []VerifyKey{NewVerifyKey(k.Public())}})
	if err != nil || !tm.Signed {
		t.Errorf("signed trust material: %v", err)
	}
}

// TestKeyBindings: key_binding defaults to software and max_key_binding to
// no cap (SPEC §5.2); given values are read exactly.
func TestKeyBindings(t *testing.T) {
	key0 := func(m map[string]any) map[string]any {
		return m["issuers"].([]any)[0].(map[string]any)["keys"].([]any)[0].(map[string]any)
	}
	doc := edit(t, trustDoc(t), func(m map[string]any) {
		key0(m)["key_binding"] = "hardware_local"
		key0(m)["max_key_binding"] = "remote_kms"
	})
	tm, err := ParseTrustMaterial(doc, Options{AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	keys := tm.Issuers["https://issuer.example"].Keys
	if k := keys[0]; k.KeyBinding != signerclass.HardwareLocal || k.MaxKeyBinding != signerclass.RemoteKMS {
		t.Errorf("key %s: key_binding %v, max_key_binding %v; want hardware_local, remote_kms", k.KID, k.KeyBinding, k.MaxKeyBinding)
	}
	if k := keys[1]; k.KeyBinding != signerclass.Software || k.MaxKeyBinding.Valid() {
		t.Errorf("key %s without the members: key_binding %v, max_key_binding %v; want software, no cap", k.KID, k.KeyBinding, k.MaxKeyBinding)
	}
}

func TestPassportKey(t *testing.T) {
	tm, err := ParseTrustMaterial([]byte(trustDoc(t)), Options{AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	in2026 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	in2027 := time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		iss    string
		kid    string
		hasKID bool
		cnf    string
		now    time.Time
		want   string // kid, "" for nil
	}{
		{"kid active", "https://issuer.example", "k-active", true, "", in2026, "k-active"},
		{"kid retired", "https://issuer.example", "k-retired", true, "", in2026, ""},
		{"kid unknown", "https://issuer.example", "nope", true, "", in2026, ""},
		{"kid within window", "https://issuer.example", "k-window", true, "", in2026, "k-window"},
		{"kid after not_after", "https://issuer.example", "k-window", true, "", in2027, ""},
		{"kid before not_before", "https://issuer.example", "k-window", true, "", time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC), ""},
		{"kid at not_before", "https://issuer.example", "k-window", true, "", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "k-window"},
		{"kid at not_after", "https://issuer.example", "k-window", true, "", time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC), "k-window"},
		{"kid of other issuer", "https://issuer.example", "solo", true, "", in2026, ""},
		{"empty kid is a kid", "https://issuer.example", "", true, b64(t, 10), in2026, ""},
		{"unknown issuer", "https://other.example", "k-active", true, "", in2026, ""},
		{"no kid, self-issued match", "https://issuer.example", "", false, b64(t, 12), in2026, "k-window"},
		{"no kid, self-issued match other", "https://issuer.example", "", false, b64(t, 10), in2026, "k-active"},
		{"no kid, retired match", "https://issuer.example", "", false, b64(t, 11), in2026, ""}, // two usable keys: ambiguous
		{"no kid, no match, two usable", "https://issuer.example", "", false, b64(t, 13), in2026, ""},
		{"no kid, no match, one usable", "https://issuer.example", "", false, b64(t, 13), in2027, "k-active"},
		{"no kid, only key", "https://solo.example", "", false, "", in2026, "solo"},
		{"no kid, only key, cnf differs", "https://solo.example", "", false, b64(t, 10), in2026, "solo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if k := tm.PassportKey(tt.iss, tt.kid, tt.hasKID, tt.cnf, tt.now); k != nil {
				got = k.KID
			}
			if got != tt.want {
				t.Errorf("PassportKey(%s, %q, %v) = %q, want %q", tt.iss, tt.kid, tt.hasKID, got, tt.want)
			}
		})
	}
}

func TestParseTrustMaterialErrors(t *testing.T) {
	base := trustDoc(t)
	key0 := func(m map[string]any) map[string]any {
		return m["issuers"].([]any)[0].(map[string]any)["keys"].([]any)[0].(map[string]any)
	}
	iss0 := func(m map[string]any) map[string]any { return m["issuers"].([]any)[0].(map[string]any) }
	tests := []struct {
		name string
		doc  []byte
		want string
	}{
		{"bad version", edit(t, base, func(m map[string]any) { m["version"] = "v" }), `version: "v" is not`},
		{"bad kind", edit(t, base, func(m map[string]any) { m["kind"] = "k" }), `kind: "k" is not`},
		{"unknown top", edit(t, base, func(m map[string]any) { m["contract_metadata"] = 1 }), `unknown member "contract_metadata"`},
		{"missing issuers", edit(t, base, func(m map[string]any) { delete(m, "issuers") }), `missing required member "issuers"`},
		{"unknown in issuer", edit(t, base, func(m map[string]any) { iss0(m)["jwks_uri"] = "x" }), `issuers[0]: unknown member "jwks_uri"`},
		{"duplicate issuer", edit(t, base, func(m map[string]any) { m["issuers"].([]any)[1].(map[string]any)["issuer"] = "https://issuer.example" }), `issuers[1].issuer: duplicate issuer`},
		{"bad source type", edit(t, base, func(m map[string]any) { iss0(m)["source_type"] = "x" }), `issuers[0].source_type: unknown source type "x"`},
		{"missing keys", edit(t, base, func(m map[string]any) { delete(iss0(m), "keys") }), `issuers[0]: missing required member "keys"`},
		{"unknown in key", edit(t, base, func(m map[string]any) { key0(m)["use"] = "sig" }), `issuers[0].keys[0]: unknown member "use"`},
		{"bad alg", edit(t, base, func(m map[string]any) { key0(m)["alg"] = "ES256" }), `issuers[0].keys[0].alg: "ES256" is not "EdDSA"`},
		{"bad status", edit(t, base, func(m map[string]any) { key0(m)["status"] = "revoked" }), `issuers[0].keys[0].status: "revoked" is neither`},
		{"missing status", edit(t, base, func(m map[string]any) { delete(key0(m), "status") }), `issuers[0].keys[0]: missing required member "status"`},
		{"padded key", edit(t, base, func(m map[string]any) { key0(m)["public_key_b64url"] = b64(t, 10) + "=" }), `issuers[0].keys[0].public_key_b64url: not canonical`},
		{"short key", edit(t, base, func(m map[string]any) { key0(m)["public_key_b64url"] = "AAAA" }), `public_key_b64url: not canonical unpadded base64url of 32 bytes`},
		{"duplicate kid", edit(t, base, func(m map[string]any) { key0(m)["kid"] = "k-retired" }), `issuers[0].keys[1].kid: duplicate kid "k-retired"`},
		{"duplicate public key", edit(t, base, func(m map[string]any) { key0(m)["public_key_b64url"] = b64(t, 11) }), `issuers[0].keys[1].public_key_b64url: same public key as kid "k-active"`},
		{"window inverted", edit(t, base, func(m map[string]any) {
			key0(m)["not_before"] = "2027-01-01T00:00:00Z"
			key0(m)["not_after"] = "2026-01-01T00:00:00Z"
		}), `issuers[0].keys[0].not_after: before not_before`},
		{"bad time", edit(t, base, func(m map[string]any) { key0(m)["not_after"] = "tomorrow" }), `issuers[0].keys[0].not_after: must be an RFC 3339`},
		{"duplicate member", []byte(strings.Replace(base, `"kid":"solo",`, `"kid":"solo","kid":"k-active",`, 1)), `issuers[1].keys[0].kid: duplicate member`},
		{"unknown key binding", edit(t, base, func(m map[string]any) { key0(m)["key_binding"] = "tpm" }), `issuers[0].keys[0].key_binding: unknown key binding "tpm"`},
		{"key binding upper case", edit(t, base, func(m map[string]any) { key0(m)["key_binding"] = "HARDWARE_LOCAL" }), `issuers[0].keys[0].key_binding: unknown key binding "HARDWARE_LOCAL"`},
		{"empty key binding", edit(t, base, func(m map[string]any) { key0(m)["key_binding"] = "" }), `issuers[0].keys[0].key_binding: unknown key binding ""`},
		{"key binding rank", edit(t, base, func(m map[string]any) { key0(m)["key_binding"] = 30 }), `issuers[0].keys[0].key_binding: must be a string`},
		{"null key binding", edit(t, base, func(m map[string]any) { key0(m)["key_binding"] = nil }), `issuers[0].keys[0].key_binding: must be a string`},
		{"unknown max key binding", edit(t, base, func(m map[string]any) { key0(m)["max_key_binding"] = "none" }), `issuers[0].keys[0].max_key_binding: unknown key binding "none"`},
		{"max key binding list", edit(t, base, func(m map[string]any) { key0(m)["max_key_binding"] = []any{"software"} }), `issuers[0].keys[0].max_key_binding: must be a string`},
		{"null max key binding", edit(t, base, func(m map[string]any) { key0(m)["max_key_binding"] = nil }), `issuers[0].keys[0].max_key_binding: must be a string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseTrustMaterial(tt.doc, Options{AllowUnsigned: true})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "bundle: trust material: ") {
				t.Errorf("ParseTrustMaterial = %v\nwant error containing %q", err, tt.want)
			}
		})
	}
}

// trustWithAuditNodes is trustDoc with an audit_nodes member.
func trustWithAuditNodes(t testing.TB, nodes string) string {
	doc := trustDoc(t)
	return doc[:len(doc)-1] + `,"audit_nodes":` + nodes + `}`
}

func TestTrustMaterialAuditNodes(t *testing.T) {
	k20, k21 := b64(t, 20), b64(t, 21)
	tm, err := ParseTrustMaterial([]byte(trustWithAuditNodes(t, `[
		{"node_id":"node-a:8081","public_key_b64url":"`+k20+`","status":"active"},
		{"node_id":"node-old:8081","public_key_b64url":"`+k21+`","status":"retired"}]`)), Options{AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.AuditNodes) != 2 {
		t.Fatalf("AuditNodes = %+v, want 2 entries", tm.AuditNodes)
	}
	a, old := tm.AuditNodes[0], tm.AuditNodes[1]
	if a.NodeID != "node-a:8081" || !a.Active || a.PublicKeyB64 != k20 || len(a.PublicKey) != 32 {
		t.Errorf("AuditNodes[0] = %+v", a)
	}
	if old.NodeID != "node-old:8081" || old.Active {
		t.Errorf("AuditNodes[1] = %+v, want node-old:8081 retired", old)
	}
	if tm, err := ParseTrustMaterial([]byte(trustDoc(t)), Options{AllowUnsigned: true}); err != nil || tm.AuditNodes != nil {
		t.Errorf("without audit_nodes: AuditNodes = %v, err %v; want nil, nil", tm.AuditNodes, err)
	}

	bad := []struct {
		name, nodes, want string
	}{
		{"not an array", `{}`, "audit_nodes: must be an array"},
		{"entry not an object", `["x"]`, "audit_nodes[0]: must be an object"},
		{"unknown member", `[{"node_id":"a","public_key_b64url":"` + k20 + `","status":"active","kid":"x"}]`, "kid"},
		{"no node id", `[{"public_key_b64url":"` + k20 + `","status":"active"}]`, "node_id"},
		{"empty node id", `[{"node_id":"","public_key_b64url":"` + k20 + `","status":"active"}]`, "node_id"},
		{"no key", `[{"node_id":"a","status":"active"}]`, "public_key_b64url"},
		{"short key", `[{"node_id":"a","public_key_b64url":"AAAA","status":"active"}]`, "32 bytes"},
		{"padded key", `[{"node_id":"a","public_key_b64url":"` + k20 + `=","status":"active"}]`, "32 bytes"},
		{"no status", `[{"node_id":"a","public_key_b64url":"` + k20 + `"}]`, "status"},
		{"unknown status", `[{"node_id":"a","public_key_b64url":"` + k20 + `","status":"revoked"}]`, "neither"},
		{"key for two nodes", `[{"node_id":"a","public_key_b64url":"` + k20 + `","status":"active"},
			{"node_id":"b","public_key_b64url":"` + k20 + `","status":"active"}]`, `same public key as node "a"`},
		{"null", `null`, "audit_nodes"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseTrustMaterial([]byte(trustWithAuditNodes(t, tt.nodes)), Options{AllowUnsigned: true})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseTrustMaterial(audit_nodes %s) = %v, want an error mentioning %q", tt.nodes, err, tt.want)
			}
		})
	}
}

func TestTrustMaterialAssertionKeys(t *testing.T) {
	k20, k21, k22 := b64(t, 20), b64(t, 21), b64(t, 22)
	with := func(keys string) []byte {
		doc := trustDoc(t)
		return []byte(doc[:len(doc)-1] + `,"assertion_keys":` + keys + `}`)
	}
	tm, err := ParseTrustMaterial(with(`[
		{"kid":"a-2","public_key_b64url":"`+k20+`","status":"next"},
		{"kid":"a-1","public_key_b64url":"`+k21+`","status":"active"},
		{"kid":"a-0","public_key_b64url":"`+k22+`","status":"retired"}]`), Options{AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	got := tm.AssertionKeys
	if len(got) != 3 || got[0].KID != "a-2" || got[0].Status != AssertionKeyNext || got[1].Status != AssertionKeyActive ||
		got[2].Status != AssertionKeyRetired || len(got[1].PublicKey) != 32 {
		t.Errorf("AssertionKeys = %+v", got)
	}
	if tm, err := ParseTrustMaterial([]byte(trustDoc(t)), Options{AllowUnsigned: true}); err != nil || tm.AssertionKeys != nil {
		t.Errorf("without assertion_keys: %v, %v; want nil, nil", tm.AssertionKeys, err)
	}
	for name, keys := range map[string]string{
		"unknown status": `[{"kid":"a","public_key_b64url":"` + k20 + `","status":"revoked"}]`,
		"unknown member": `[{"kid":"a","public_key_b64url":"` + k20 + `","status":"active","node_id":"n"}]`,
		"no kid":         `[{"public_key_b64url":"` + k20 + `","status":"active"}]`,
		"short key":      `[{"kid":"a","public_key_b64url":"AAAA","status":"active"}]`,
		"kid twice": `[{"kid":"a","public_key_b64url":"` + k20 + `","status":"active"},
			{"kid":"a","public_key_b64url":"` + k21 + `","status":"next"}]`,
		"key twice": `[{"kid":"a","public_key_b64url":"` + k20 + `","status":"active"},
			{"kid":"b","public_key_b64url":"` + k20 + `","status":"next"}]`,
	} {
		if _, err := ParseTrustMaterial(with(keys), Options{AllowUnsigned: true}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
