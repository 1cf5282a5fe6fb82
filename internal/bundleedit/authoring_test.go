package bundleedit

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeAuthoring(t *testing.T, doc string) (data []byte, dir string) {
	t.Helper()
	dir = t.TempDir()
	if err := testKey(t, 3, "orders-key").Write(filepath.Join(dir, "orders")); err != nil {
		t.Fatal(err)
	}
	return []byte(doc), dir
}

const authoringDoc = `{
  "version": "tpcluster-authoring-v1",
  "trust_domain": "example.local",
  "default_freshness_class": "offline-ok",
  "apis": [{"api_id": "orders-api", "audience": "orders-api", "base_url": "https://orders.example"},
           {"api_id": "admin-api", "audience": "admin"}],
  "clients": [
    {"name": "orders", "issuer": "https://issuer.example", "public_key_file": "orders.pub",
     "subject_exact": "spiffe://example.local/workload/orders"},
    {"name": "orders-batch", "issuer": "https://issuer.example", "public_key_file": "orders.pub",
     "subject_prefix": "spiffe://example.local/batch/", "required_key_binding": "remote_kms"},
    {"name": "ops", "issuer": "https://ops.example", "kid": "ops-1", "source_type": "oidc_jwks",
     "public_key_b64url": "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg", "subject_exact": "ops",
     "key_binding": "hardware_local", "max_key_binding": "remote_kms"}],
  "routes": [
    {"route_id": "orders.create", "method": "POST", "path_template": "/v1/orders", "api_id": "orders-api",
     "freshness_class": "bounded", "max_staleness_seconds": 60, "required_key_binding": "software",
     "signed_headers": {"required": ["idempotency-key"]}, "allowed_clients": ["orders", "orders-batch"]},
    {"route_id": "orders.get", "method": "GET", "path_template": "/v1/orders/{id}", "api_id": "orders-api",
     "allowed_clients": ["orders", "orders", "ops"]},
    {"route_id": "admin.all", "method": "GET", "path_template": "/admin/*", "api_id": "admin-api",
     "audience": "admin-v2", "body_hash_from_gateway": true, "query_strict": true, "allowed_clients": ["ops"]}]
}`

func TestBuild(t *testing.T) {
	data, dir := writeAuthoring(t, authoringDoc)
	a, err := ParseAuthoring(data, dir)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	policy, trust, err := Build(a, 5, at)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range [][]byte{policy, trust} {
		if !strings.Contains(string(doc), `"sequence": 5`) || !strings.Contains(string(doc), `"issued_at": "2026-03-01T12:00:00Z"`) {
			t.Errorf("document lacks sequence 5 and issued_at:\n%s", doc)
		}
	}
	p, tm := signedLoad(t, policy, trust)
	tests := []struct {
		method, path, route, audience string
		sources                       int
	}{
		{"POST", "/v1/orders", "orders.create", "orders-api", 2},
		{"GET", "/v1/orders/7", "orders.get", "orders-api", 2}, // "orders" twice is one rule
		{"GET", "/admin/x/y", "admin.all", "admin-v2", 1},
	}
	for _, tt := range tests {
		r := p.Resolve(tt.method, tt.path)
		if r == nil || r.ID != tt.route {
			t.Errorf("Resolve(%s %s) = %v, want %s", tt.method, tt.path, r, tt.route)
			continue
		}
		if r.Audience != tt.audience || len(r.Sources) != tt.sources {
			t.Errorf("route %s: audience %q, %d sources; want %q, %d", r.ID, r.Audience, len(r.Sources), tt.audience, tt.sources)
		}
	}
	if r := p.RouteByID("orders.create"); r.MaxStaleness != time.Minute || len(r.SignedHeaders.Required) != 1 ||
		r.Sources[1].RequiredKeyBinding.String() != "remote_kms" {
		t.Errorf("orders.create = %+v", r)
	}
	if r := p.RouteByID("admin.all"); !r.BodyHashFromGateway || !r.QueryStrict {
		t.Errorf("admin.all: body_hash_from_gateway %v, query_strict %v; want both", r.BodyHashFromGateway, r.QueryStrict)
	}
	if p.RouteByID("orders.get").QueryStrict {
		t.Error("orders.get: query_strict set without being asked for")
	}
	now := at
	if k := tm.PassportKey("https://issuer.example", "orders-key", true, "", now); k == nil {
		t.Error("orders key (kid from the key file) not found")
	}
	if n := len(tm.Issuers["https://issuer.example"].Keys); n != 1 {
		t.Errorf("issuer.example has %d keys, want 1 (two clients share one key)", n)
	}
	if is := tm.Issuers["https://ops.example"]; is == nil || is.SourceType != "oidc_jwks" || is.Keys[0].KID != "ops-1" {
		t.Errorf("ops issuer = %+v", is)
	} else if k := is.Keys[0]; k.KeyBinding.String() != "hardware_local" || k.MaxKeyBinding.String() != "remote_kms" {
		t.Errorf("ops key: key_binding %v, max_key_binding %v; want hardware_local, remote_kms", k.KeyBinding, k.MaxKeyBinding)
	}
	if k := tm.Issuers["https://issuer.example"].Keys[0]; k.KeyBinding.String() != "software" || k.MaxKeyBinding.Valid() {
		t.Errorf("orders key without the members: key_binding %v, max_key_binding %v; want software, none", k.KeyBinding, k.MaxKeyBinding)
	}
}

func TestParseAuthoringReportsEveryProblem(t *testing.T) {
	doc := `{"version": "v0", "apis": [{"api_id": "x"}, {"api_id": "x", "audience": "x"}],
	  "clients": [{"name": "c", "issuer": "i", "public_key_file": "missing.pub", "subject_exact": "s", "subject_prefix": "p",
	    "key_binding": "tpm", "max_key_binding": "Software"}],
	  "routes": [{"route_id": "r", "method": "GET", "path_template": "/", "api_id": "nope", "allowed_clients": ["c", "ghost"]}]}`
	data, dir := writeAuthoring(t, doc)
	_, err := ParseAuthoring(data, dir)
	if err == nil {
		t.Fatal("ParseAuthoring accepted a bad config")
	}
	for _, want := range []string{
		`version: "v0" is not "tpcluster-authoring-v1"`,
		"trust_domain: required",
		"apis[0].audience: required",
		`apis[1].api_id: duplicate "x"`,
		"clients[0]: want exactly one of subject_exact and subject_prefix",
		"missing.pub",
		`clients[0].key_binding: unknown key binding "tpm"`,
		`clients[0].max_key_binding: unknown key binding "Software"`,
		`routes[0].api_id: no API "nope" in apis`,
		`routes[0].allowed_clients[1]: no client "ghost" in clients`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestParseAuthoringStrict(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown member":   `{"version": "tpcluster-authoring-v1", "trust_domian": "x"}`,
		"duplicate member": `{"version": "tpcluster-authoring-v1", "version": "tpcluster-authoring-v1"}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseAuthoring([]byte(doc), t.TempDir()); err == nil {
				t.Errorf("ParseAuthoring(%s) = nil error", doc)
			}
		})
	}
	if _, _, err := Build(&Authoring{}, 1, time.Now()); err == nil {
		t.Error("Build accepted an Authoring that ParseAuthoring did not check")
	}
}

// TestBuildSharedKeyBindingsAgree: two clients on one key write one key
// entry, so they must agree on its key_binding and max_key_binding.
func TestBuildSharedKeyBindingsAgree(t *testing.T) {
	doc := strings.Replace(authoringDoc, `"required_key_binding": "remote_kms"},`,
		`"required_key_binding": "remote_kms", "key_binding": "hardware_local"},`, 1)
	data, dir := writeAuthoring(t, doc)
	a, err := ParseAuthoring(data, dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Build(a, 1, time.Now()); err == nil || !strings.Contains(err.Error(), `client "orders-batch": issuer "https://issuer.example" has another client with kid`) {
		t.Errorf("Build(clients disagreeing on a shared key's key_binding) = %v, want a conflict", err)
	}
}

// TestParseAuthoringUnknownPaths: every unknown member is reported at once
// by its JSON path, nested ones included.
func TestParseAuthoringUnknownPaths(t *testing.T) {
	doc := `{"version": "tpcluster-authoring-v1", "trust_domian": "x",
		"apis": [{"api_id": "a", "audience": "a"}],
		"clients": [{"name": "c", "isuer": "i"}],
		"routes": [{"route_id": "r"}, {"route_id": "s", "signed_headers": {"requird": []}}]}`
	_, err := ParseAuthoring([]byte(doc), t.TempDir())
	if err == nil {
		t.Fatal("ParseAuthoring accepted unknown members")
	}
	for _, want := range []string{
		"trust_domian: unknown member",
		"clients[0].isuer: unknown member",
		"routes[1].signed_headers.requird: unknown member",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
