package bundle

import (
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/signerclass"
)

func TestParsePolicyFields(t *testing.T) {
	p, err := ParsePolicy([]byte(basePolicy), Options{AllowUnsigned: true, ModTime: testModTime})
	if err != nil {
		t.Fatal(err)
	}
	if p.Sequence != 3 || !p.IssuedAt.Equal(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("sequence %d issued_at %v, want the document's", p.Sequence, p.IssuedAt)
	}
	if len(p.SHA256) != 64 || p.TrustDomain != "example.local" || p.ProvenancePolicy == nil || p.ProvenancePolicy.RequiredPosture != "ok" {
		t.Errorf("policy = %+v", p)
	}
	if len(p.Revocations) != 2 || p.Revocations[1].Issuer != "https://issuer.example" || p.Revocations[1].Until.Year() != 2027 || !p.Revocations[0].Until.IsZero() {
		t.Errorf("revocations = %+v", p.Revocations)
	}
	create := p.RouteByID("orders.create")
	if create == nil {
		t.Fatal("RouteByID(orders.create) = nil")
	}
	if create.Audience != "orders-api" || create.RequiredKeyBinding != signerclass.RemoteKMS ||
		create.Freshness != OfflineOK || create.MaxStaleness != 300*time.Second || !create.BodyHashFromGateway || !create.QueryStrict || create.Risk != "high" {
		t.Errorf("orders.create = %+v", create)
	}
	if got := create.SignedHeaders; strings.Join(got.Required, ",") != "idempotency-key" || strings.Join(got.Ignore, ",") != "x-debug" {
		t.Errorf("signed headers = %+v", got)
	}
	if c := create.Sources[0].Context; c == nil || c.MaxTxnValue.Cmp(big.NewRat(1000, 1)) != 0 || c.RequiredToolName != "t" {
		t.Errorf("context policy = %+v", c)
	}
	get := p.RouteByID("orders.get")
	if get.Audience != "orders-read" || get.RequiredKeyBinding != signerclass.Software || get.Freshness != Bounded ||
		get.FreshnessName != "bounded" || get.MaxStaleness != time.Minute || get.QueryStrict {
		t.Errorf("orders.get = %+v", get)
	}
	if s := get.Sources[0]; s.SubjectPrefix != "svc:" || s.RequiredKeyBinding != signerclass.HardwareLocal || s.Provenance.Profile != "p" {
		t.Errorf("orders.get source = %+v", s)
	}
	admin := p.RouteByID("admin.any")
	if admin.Audience != "admin" || admin.Freshness != FreshnessUnknown || admin.FreshnessName != "weird" {
		t.Errorf("admin.any = %+v", admin)
	}
	if p.RouteByID("nope") != nil {
		t.Error("RouteByID(nope) != nil")
	}
}

func TestParsePolicyDefaults(t *testing.T) {
	doc := `{"version":"trustplane-bundle-v1","kind":"policy_runtime_bundle","trust_domain":"d",
	  "apis":[{"api_id":"a","audience":"aud"}],
	  "route_groups":[{"route_group_id":"g","api_id":"a","routes":[{"route_id":"r","method":"GET","path_template":"/",
	    "allowed_sources":[{"source_type":"software_jwks","issuer":"i","trust_domain":"d","subject_exact":"s"}]}]}]}`
	p, err := ParsePolicy([]byte(doc), Options{AllowUnsigned: true, ModTime: testModTime})
	if err != nil {
		t.Fatal(err)
	}
	r := p.RouteByID("r")
	if p.DefaultRequiredKeyBinding != signerclass.Software || r.RequiredKeyBinding != signerclass.Software ||
		r.Freshness != Realtime || r.MaxStaleness != 0 || p.Sequence != 0 || !p.IssuedAt.Equal(testModTime) || len(p.Revocations) != 0 {
		t.Errorf("defaults: policy %+v route %+v", p, r)
	}
}

// TestParsePolicyErrors: every load error names the field it is about.
func TestParsePolicyErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  []byte
		want string
	}{
		{"not json", []byte(`{"version":`), "malformed JSON"},
		{"not object", []byte(`[]`), "not a JSON object"},
		{"trailing data", []byte(basePolicy + ` {}`), "data after"},
		{"invalid utf8", []byte(strings.Replace(basePolicy, `"high"`, "\"\xff\"", 1)), "not valid UTF-8"},
		{"lone surrogate", []byte(strings.Replace(basePolicy, `"high"`, `"\ud800"`, 1)), "RFC 8785"},
		{"duplicate top", []byte(strings.Replace(basePolicy, `"trust_domain": "example.local",`, `"trust_domain": "example.local", "trust_domain": "evil",`, 1)), "trust_domain: duplicate member"},
		{"duplicate nested", []byte(strings.Replace(basePolicy, `"subject_prefix": "svc:",`, `"subject_prefix": "svc:", "subject_prefix": "",`, 1)), "route_groups[0].routes[1].allowed_sources[0].subject_prefix: duplicate member"},
		{"duplicate escaped", []byte(strings.Replace(basePolicy, `"risk": "high",`, `"risk": "high", "ri\u0073k": "low",`, 1)), "risk: duplicate member"},
		{"bad version", edit(t, basePolicy, func(m map[string]any) { m["version"] = "trustplane-bundle-v2" }), `version: "trustplane-bundle-v2" is not`},
		{"bad kind", edit(t, basePolicy, func(m map[string]any) { m["kind"] = "x" }), `kind: "x" is not`},
		{"missing version", edit(t, basePolicy, func(m map[string]any) { delete(m, "version") }), `missing required member "version"`},
		{"missing trust_domain", edit(t, basePolicy, func(m map[string]any) { delete(m, "trust_domain") }), `missing required member "trust_domain"`},
		{"missing apis", edit(t, basePolicy, func(m map[string]any) { delete(m, "apis") }), `missing required member "apis"`},
		{"missing route_groups", edit(t, basePolicy, func(m map[string]any) { delete(m, "route_groups") }), `missing required member "route_groups"`},
		{"unknown top", edit(t, basePolicy, func(m map[string]any) { m["deny_all"] = true }), `unknown member "deny_all"`},
		{"null member", edit(t, basePolicy, func(m map[string]any) { m["trust_domain"] = nil }), "trust_domain: must be a string"},
		{"unknown in api", edit(t, basePolicy, func(m map[string]any) { m["apis"].([]any)[0].(map[string]any)["x"] = 1 }), `apis[0]: unknown member "x"`},
		{"duplicate api", edit(t, basePolicy, func(m map[string]any) { m["apis"].([]any)[1].(map[string]any)["api_id"] = "orders-api" }), `apis[1].api_id: duplicate api_id "orders-api"`},
		{"api missing audience", edit(t, basePolicy, func(m map[string]any) { delete(m["apis"].([]any)[1].(map[string]any), "audience") }), `apis[1]: missing required member "audience"`},
		{"unknown api_id", edit(t, basePolicy, func(m map[string]any) { m["route_groups"].([]any)[1].(map[string]any)["api_id"] = "nope" }), `route_groups[1].api_id: no API "nope"`},
		{"unknown in group", edit(t, basePolicy, func(m map[string]any) { m["route_groups"].([]any)[0].(map[string]any)["x"] = 1 }), `route_groups[0]: unknown member "x"`},
		{"duplicate group", edit(t, basePolicy, func(m map[string]any) { m["route_groups"].([]any)[1].(map[string]any)["route_group_id"] = "orders" }), `route_groups[1].route_group_id: duplicate`},
		{"unknown in route", edit(t, basePolicy, func(m map[string]any) { route(m, 0, 1)["rate_limit"] = 5 }), `route_groups[0].routes[1]: unknown member "rate_limit"`},
		{"route missing sources", edit(t, basePolicy, func(m map[string]any) { delete(route(m, 0, 1), "allowed_sources") }), `route_groups[0].routes[1]: missing required member "allowed_sources"`},
		{"route empty sources", edit(t, basePolicy, func(m map[string]any) { route(m, 0, 1)["allowed_sources"] = []any{} }), `route_groups[0].routes[1].allowed_sources: must not be empty`},
		{"route missing id", edit(t, basePolicy, func(m map[string]any) { delete(route(m, 0, 1), "route_id") }), `route_groups[0].routes[1]: missing required member "route_id"`},
		{"duplicate route id", edit(t, basePolicy, func(m map[string]any) { route(m, 1, 0)["route_id"] = "orders.get" }), `route_groups[1].routes[0].route_id: duplicate route_id "orders.get" (also at route_groups[0].routes[1])`},
		{"lower-case method", edit(t, basePolicy, func(m map[string]any) { route(m, 0, 1)["method"] = "get" }), `route_groups[0].routes[1].method: "get" is not an upper-case`},
		{"bad template", edit(t, basePolicy, func(m map[string]any) { route(m, 0, 1)["path_template"] = "v1/x" }), `route_groups[0].routes[1].path_template: must start with /`},
		{"route bad binding", edit(t, basePolicy, func(m map[string]any) { route(m, 0, 0)["required_key_binding"] = "tpm" }), `route_groups[0].routes[0].required_key_binding: unknown key binding "tpm"`},
		{"default bad binding", edit(t, basePolicy, func(m map[string]any) { m["default_required_key_binding"] = "Software" }), `default_required_key_binding: unknown key binding "Software"`},
		{"staleness fraction", edit(t, basePolicy, func(m map[string]any) { route(m, 0, 1)["max_staleness_seconds"] = json.Number("1.5") }), `route_groups[0].routes[1].max_staleness_seconds: must be an integer`},
		{"staleness string", edit(t, basePolicy, func(m map[string]any) { m["default_max_staleness_seconds"] = "300" }), `default_max_staleness_seconds: must be an integer`},
		{"staleness huge", edit(t, basePolicy, func(m map[string]any) { route(m, 0, 1)["max_staleness_seconds"] = json.Number("9007199254740993") }), `max_staleness_seconds: integer out of range`},
		{"query_strict not bool", edit(t, basePolicy, func(m map[string]any) { route(m, 0, 0)["query_strict"] = "yes" }), `query_strict: must be true or false`},
		{"query_strict null", edit(t, basePolicy, func(m map[string]any) { route(m, 0, 0)["query_strict"] = nil }), `query_strict: must be true or false`},
		{"body hash not bool", edit(t, basePolicy, func(m map[string]any) { route(m, 0, 0)["body_hash_from_gateway"] = "true" }), `body_hash_from_gateway: must be true or false`},
		{"keep override not bool", edit(t, basePolicy, func(m map[string]any) { route(m, 0, 0)["keep_override_headers"] = 1 }), `keep_override_headers: must be true or false`},
		{"unknown in source", edit(t, basePolicy, func(m map[string]any) { source(m, 0, 1, 0)["subject_regex"] = ".*" }), `route_groups[0].routes[1].allowed_sources[0]: unknown member "subject_regex"`},
		{"both subjects", edit(t, basePolicy, func(m map[string]any) { source(m, 0, 1, 0)["subject_exact"] = "x" }), `route_groups[0].routes[1].allowed_sources[0]: both subject_exact and subject_prefix`},
		{"neither subject", edit(t, basePolicy, func(m map[string]any) { delete(source(m, 0, 1, 0), "subject_prefix") }), `route_groups[0].routes[1].allowed_sources[0]: neither subject_exact nor subject_prefix`},
		{"empty subject prefix", edit(t, basePolicy, func(m map[string]any) { source(m, 0, 1, 0)["subject_prefix"] = "" }), `allowed_sources[0].subject_prefix: must not be empty`},
		{"unknown source type", edit(t, basePolicy, func(m map[string]any) { source(m, 0, 1, 0)["source_type"] = "x509" }), `route_groups[0].routes[1].allowed_sources[0].source_type: unknown source type "x509"`},
		{"source bad binding", edit(t, basePolicy, func(m map[string]any) { source(m, 0, 1, 0)["required_key_binding"] = "hsm" }), `allowed_sources[0].required_key_binding: unknown key binding "hsm"`},
		{"source missing issuer", edit(t, basePolicy, func(m map[string]any) { delete(source(m, 0, 1, 0), "issuer") }), `allowed_sources[0]: missing required member "issuer"`},
		{"unknown in context", edit(t, basePolicy, func(m map[string]any) { source(m, 0, 0, 0)["context_policy"].(map[string]any)["x"] = 1 }), `allowed_sources[0].context_policy: unknown member "x"`},
		{"bad max_txn_value", edit(t, basePolicy, func(m map[string]any) { source(m, 0, 0, 0)["context_policy"].(map[string]any)["max_txn_value"] = "1e3" }), `context_policy.max_txn_value: "1e3" is not a plain decimal`},
		{"exponent max_txn_value", edit(t, basePolicy, func(m map[string]any) {
			source(m, 0, 0, 0)["context_policy"].(map[string]any)["max_txn_value"] = json.Number("1e3")
		}), `max_txn_value: 1e3 is not a plain decimal`},
		{"imprecise max_txn_value", edit(t, basePolicy, func(m map[string]any) {
			source(m, 0, 0, 0)["context_policy"].(map[string]any)["max_txn_value"] = json.Number("0.10000000000000000001")
		}), `changes under canonical JSON`},
		{"negative max_txn_value", edit(t, basePolicy, func(m map[string]any) { source(m, 0, 0, 0)["context_policy"].(map[string]any)["max_txn_value"] = "-1" }), `max_txn_value: must not be negative`},
		{"unknown in provenance", edit(t, basePolicy, func(m map[string]any) { m["provenance_policy"].(map[string]any)["x"] = "y" }), `provenance_policy: unknown member "x"`},
		{"signed header never covered", edit(t, basePolicy, func(m map[string]any) {
			route(m, 0, 0)["signed_headers"] = map[string]any{"required": []any{"Authorization"}}
		}), `signed_headers.required[0]: "authorization" is never a covered header`},
		{"signed header ignore nonce", edit(t, basePolicy, func(m map[string]any) {
			route(m, 0, 0)["signed_headers"] = map[string]any{"ignore": []any{"X-TrustPlane-Nonce"}}
		}), `signed_headers.ignore[0]: "x-trustplane-nonce" is required`},
		{"signed header bad name", edit(t, basePolicy, func(m map[string]any) {
			route(m, 0, 0)["signed_headers"] = map[string]any{"required": []any{"a b"}}
		}), `signed_headers.required[0]: "a b" is not a header name`},
		{"unknown in signed headers", edit(t, basePolicy, func(m map[string]any) { route(m, 0, 0)["signed_headers"] = map[string]any{"optional": []any{}} }), `signed_headers: unknown member "optional"`},
		{"revocation type", edit(t, basePolicy, func(m map[string]any) { m["revocations"].([]any)[0].(map[string]any)["type"] = "sub" }), `revocations[0].type: unknown revocation type "sub"`},
		{"revocation until", edit(t, basePolicy, func(m map[string]any) { m["revocations"].([]any)[1].(map[string]any)["until"] = "2027-01-01" }), `revocations[1].until: must be an RFC 3339 UTC time`},
		{"revocation unknown", edit(t, basePolicy, func(m map[string]any) { m["revocations"].([]any)[1].(map[string]any)["reason"] = "x" }), `revocations[1]: unknown member "reason"`},
		{"issued_at offset", edit(t, basePolicy, func(m map[string]any) { m["issued_at"] = "2026-11-23T10:00:00+01:00" }), `issued_at: must be an RFC 3339 UTC time`},
		{"negative sequence", edit(t, basePolicy, func(m map[string]any) { m["sequence"] = json.Number("-1") }), `sequence: must not be negative`},
		{"ambiguous literal", edit(t, basePolicy, func(m map[string]any) {
			route(m, 0, 1)["path_template"] = "/v1/orders"
			route(m, 0, 1)["method"] = "POST"
		}),
			`route_groups[0].routes[1]: route "orders.get" (POST /v1/orders) could match the same requests as route "orders.create"`},
		{"bad signature format", edit(t, basePolicy, func(m map[string]any) { m["signature"] = map[string]any{"format": "x", "value": "y"} }), `signature.format: "x" is not "ed25519-jcs-v1"`},
		{"unknown in signed_by", edit(t, basePolicy, func(m map[string]any) { m["signed_by"] = map[string]any{"issuer": "i", "jku": "y"} }), `signed_by: unknown member "jku"`},
		{"too deep", edit(t, basePolicy, func(m map[string]any) {
			var v any = 1
			for range 40 {
				v = []any{v}
			}
			m["scopes"] = v
		}), "nested deeper than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePolicy(tt.doc, Options{AllowUnsigned: true, ModTime: testModTime})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParsePolicy = %v\nwant error containing %q", err, tt.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "bundle: policy: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

// TestKeepOverrideHeaders: the route switch defaults to false (proxy mode
// drops uncovered override headers) and reads an explicit true.
func TestKeepOverrideHeaders(t *testing.T) {
	p, err := ParsePolicy(edit(t, basePolicy, func(m map[string]any) { route(m, 0, 1)["keep_override_headers"] = true }), Options{AllowUnsigned: true, ModTime: testModTime})
	if err != nil {
		t.Fatal(err)
	}
	if r := p.RouteByID("orders.create"); r.KeepOverrideHeaders {
		t.Errorf("orders.create KeepOverrideHeaders = true, want the default false")
	}
	if r := p.RouteByID("orders.get"); !r.KeepOverrideHeaders {
		t.Errorf("orders.get KeepOverrideHeaders = false, want true as written")
	}
}

func TestBackendAssertionRoute(t *testing.T) {
	base := func(ba any) []byte {
		b, _ := json.Marshal(map[string]any{
			"version": "trustplane-bundle-v1", "kind": "policy_runtime_bundle", "trust_domain": "d",
			"apis": []any{map[string]any{"api_id": "a", "audience": "aud", "base_url": "http://x"}},
			"route_groups": []any{map[string]any{"route_group_id": "g", "api_id": "a", "routes": []any{map[string]any{
				"route_id": "r", "method": "GET", "path_template": "/x", "backend_assertion": ba,
				"allowed_sources": []any{map[string]any{"source_type": "software_jwks", "issuer": "i", "trust_domain": "d", "subject_exact": "s"}},
			}}}},
		})
		return b
	}
	opts := Options{AllowUnsigned: true, ModTime: time.Now()}
	p, err := ParsePolicy(base(map[string]any{"audience": "orders-backend", "ttl_seconds": 60}), opts)
	if err != nil {
		t.Fatal(err)
	}
	ba := p.Routes[0].BackendAssertion
	if ba == nil || ba.Audience != "orders-backend" || ba.TTL != time.Minute {
		t.Errorf("backend_assertion = %+v", ba)
	}
	for name, bad := range map[string]any{
		"ttl over 60":    map[string]any{"audience": "b", "ttl_seconds": 61},
		"ttl zero":       map[string]any{"audience": "b", "ttl_seconds": 0},
		"no ttl":         map[string]any{"audience": "b"},
		"no audience":    map[string]any{"ttl_seconds": 30},
		"unknown member": map[string]any{"audience": "b", "ttl_seconds": 30, "cache": true},
		"not an object":  "orders-backend",
	} {
		if _, err := ParsePolicy(base(bad), opts); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
