package bundle

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/signerclass"
)

// egressPolicy is an unsigned policy with one provider list and one route
// holding the given egress block (and a backend_assertion).
func egressPolicy(t *testing.T, providers any, eg any) []byte {
	t.Helper()
	doc := map[string]any{
		"version": "trustplane-bundle-v1", "kind": "policy_runtime_bundle", "trust_domain": "d",
		"apis": []any{map[string]any{"api_id": "a", "audience": "aud"}},
		"route_groups": []any{map[string]any{"route_group_id": "g", "api_id": "a", "routes": []any{map[string]any{
			"route_id": "r", "method": "GET", "path_template": "/x", "egress": eg,
			"backend_assertion": map[string]any{"audience": "acme", "ttl_seconds": 30},
			"allowed_sources":   []any{map[string]any{"source_type": "software_jwks", "issuer": "i", "trust_domain": "d", "subject_exact": "s"}},
		}}}},
	}
	if providers != nil {
		doc["egress_providers"] = providers
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func acmeProvider(mod func(p map[string]any)) []any {
	p := map[string]any{"provider_id": "acme", "token_endpoint": "https://auth.acme.example/oauth/token",
		"client_id": "tp", "client_auth": "client_secret_basic"}
	if mod != nil {
		mod(p)
	}
	return []any{p}
}

func goodEgress(mod func(e map[string]any)) map[string]any {
	e := map[string]any{"provider": "acme", "grant": "client_credentials", "scope": []any{"contacts.read", "contacts.list"},
		"audience": "https://api.acme.example", "resource": "https://api.acme.example/contacts", "tenant": "t-1",
		"claims": []any{"org_id"}, "max_token_lifetime_seconds": 900, "min_signer_class": "hardware_local"}
	if mod != nil {
		mod(e)
	}
	return e
}

func TestEgressRoute(t *testing.T) {
	opts := Options{AllowUnsigned: true, ModTime: time.Now()}
	p, err := ParsePolicy(egressPolicy(t, acmeProvider(func(p map[string]any) { p["issuer"] = "https://auth.acme.example" }), goodEgress(nil)), opts)
	if err != nil {
		t.Fatal(err)
	}
	r := p.Routes[0]
	e := r.Egress
	if e == nil {
		t.Fatal("no egress")
	}
	want := &EgressProvider{ID: "acme", TokenEndpoint: "https://auth.acme.example/oauth/token", ClientID: "tp", ClientAuth: ClientSecretBasic, Issuer: "https://auth.acme.example"}
	if *e.Provider != *want || p.EgressProviders["acme"] != e.Provider {
		t.Errorf("provider = %+v, want %+v", e.Provider, want)
	}
	if e.Grant != GrantClientCredentials || strings.Join(e.Scope, " ") != "contacts.read contacts.list" ||
		e.Audience != "https://api.acme.example" || e.Resource != "https://api.acme.example/contacts" || e.Tenant != "t-1" ||
		strings.Join(e.Claims, ",") != "org_id" || e.MaxTokenLifetime != 15*time.Minute || e.MinSignerClass != signerclass.HardwareLocal {
		t.Errorf("egress = %+v", e)
	}
	// min_signer_class raises the route's minimum, so the pipeline
	// refuses a weaker signer before the consume.
	if r.RequiredKeyBinding != signerclass.HardwareLocal {
		t.Errorf("route minimum = %s, want hardware_local", r.RequiredKeyBinding)
	}

	exch, err := ParsePolicy(egressPolicy(t, acmeProvider(nil), goodEgress(func(e map[string]any) {
		e["grant"] = string(GrantTokenExchange)
		e["subject_token"] = "backend_assertion"
		delete(e, "min_signer_class")
	})), opts)
	if err != nil {
		t.Fatal(err)
	}
	if e := exch.Routes[0].Egress; e.Grant != GrantTokenExchange || e.SubjectToken != SubjectBackendAssertion || exch.Routes[0].RequiredKeyBinding != signerclass.Software {
		t.Errorf("exchange egress = %+v, route minimum %s", e, exch.Routes[0].RequiredKeyBinding)
	}
	for _, loop := range []string{"http://127.0.0.1:9000/token", "http://[::1]:9/t", "http://localhost/t"} {
		if _, err := ParsePolicy(egressPolicy(t, acmeProvider(func(p map[string]any) { p["token_endpoint"] = loop }), goodEgress(nil)), opts); err != nil {
			t.Errorf("token endpoint %s refused: %v", loop, err)
		}
	}
}

func TestEgressRouteRefused(t *testing.T) {
	opts := Options{AllowUnsigned: true, ModTime: time.Now()}
	prov := func(k string, v any) []any { return acmeProvider(func(p map[string]any) { p[k] = v }) }
	set := func(k string, v any) map[string]any { return goodEgress(func(e map[string]any) { e[k] = v }) }
	del := func(k string) map[string]any { return goodEgress(func(e map[string]any) { delete(e, k) }) }
	for _, tc := range []struct {
		name      string
		providers any
		egress    any
		want      string // in the error
	}{
		{"unknown provider", acmeProvider(nil), set("provider", "other"), `no provider "other"`},
		{"no providers at all", nil, goodEgress(nil), `no provider "acme"`},
		{"empty scope", acmeProvider(nil), set("scope", []any{}), "scope: must not be empty"},
		{"no scope", acmeProvider(nil), del("scope"), `"scope"`},
		{"duplicate scope", acmeProvider(nil), set("scope", []any{"a", "a"}), "duplicate scope"},
		{"scope with a space", acmeProvider(nil), set("scope", []any{"a b"}), "not a scope token"},
		{"http outside loopback", prov("token_endpoint", "http://auth.acme.example/token"), goodEgress(nil), "loopback"},
		{"http on a private address", prov("token_endpoint", "http://10.0.0.1/token"), goodEgress(nil), "loopback"},
		{"not a URL", prov("token_endpoint", "auth.acme.example/token"), goodEgress(nil), "absolute"},
		{"user info", prov("token_endpoint", "https://u:p@auth.acme.example/token"), goodEgress(nil), "user info"},
		{"other scheme", prov("token_endpoint", "ftp://auth.acme.example/token"), goodEgress(nil), "https"},
		{"unknown client auth", prov("client_auth", "tls_client_auth"), goodEgress(nil), "unknown client authentication"},
		{"no client id", acmeProvider(func(p map[string]any) { delete(p, "client_id") }), goodEgress(nil), `"client_id"`},
		{"provider secret member", prov("client_secret", "s3cr3t"), goodEgress(nil), `unknown member "client_secret"`},
		{"duplicate provider", append(acmeProvider(nil), acmeProvider(nil)...), goodEgress(nil), "duplicate provider_id"},
		{"unknown grant", acmeProvider(nil), set("grant", "password"), "unknown grant"},
		{"exchange without subject", acmeProvider(nil), set("grant", string(GrantTokenExchange)), `"subject_token"`},
		{"client credentials with subject", acmeProvider(nil), set("subject_token", "backend_assertion"), "takes no subject token"},
		{"unknown subject", acmeProvider(nil), goodEgress(func(e map[string]any) {
			e["grant"], e["subject_token"] = string(GrantTokenExchange), "passport"
		}), "unknown subject token"},
		{"no lifetime", acmeProvider(nil), del("max_token_lifetime_seconds"), "max_token_lifetime_seconds"},
		{"lifetime zero", acmeProvider(nil), set("max_token_lifetime_seconds", 0), "outside"},
		{"lifetime over a day", acmeProvider(nil), set("max_token_lifetime_seconds", 86401), "outside"},
		{"unknown signer class", acmeProvider(nil), set("min_signer_class", "tpm"), "unknown key binding"},
		{"relative resource", acmeProvider(nil), set("resource", "/contacts"), "absolute URI"},
		{"empty tenant", acmeProvider(nil), set("tenant", ""), "must not be empty"},
		{"duplicate claim", acmeProvider(nil), set("claims", []any{"a", "a"}), "duplicate claim"},
		{"unknown member", acmeProvider(nil), set("client_secret", "x"), `unknown member "client_secret"`},
		{"not an object", acmeProvider(nil), "acme", "must be an object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePolicy(egressPolicy(t, tc.providers, tc.egress), opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParsePolicy = %v, want an error with %q", err, tc.want)
			}
		})
	}

	// A token exchange needs the backend assertion it exchanges.
	b := edit(t, string(egressPolicy(t, acmeProvider(nil), goodEgress(func(e map[string]any) {
		e["grant"], e["subject_token"] = string(GrantTokenExchange), "backend_assertion"
	}))), func(m map[string]any) { delete(route(m, 0, 0), "backend_assertion") })
	if _, err := ParsePolicy(b, opts); err == nil || !strings.Contains(err.Error(), "no backend_assertion") {
		t.Errorf("exchange without backend_assertion: %v", err)
	}
}

// TestEgressCheck: the node's check refuses a provider it has no
// credential for, naming it; without a check (bundlepub) the policy loads.
func TestEgressCheck(t *testing.T) {
	errNoCred := errors.New("no --egress-secret for it")
	opts := Options{AllowUnsigned: true, ModTime: time.Now(), EgressCheck: func(p *EgressProvider) error {
		if p.ID != "known" {
			return errNoCred
		}
		return nil
	}}
	doc := egressPolicy(t, acmeProvider(nil), goodEgress(nil))
	_, err := ParsePolicy(doc, opts)
	if !errors.Is(err, errNoCred) || !strings.Contains(err.Error(), `provider "acme"`) {
		t.Errorf("ParsePolicy = %v, want the check's error naming acme", err)
	}
	opts.EgressCheck = nil
	if _, err := ParsePolicy(doc, opts); err != nil {
		t.Errorf("without a check: %v", err)
	}
}

func TestEgressIntrospectionEndpoint(t *testing.T) {
	opts := Options{AllowUnsigned: true, ModTime: time.Now()}
	p, err := ParsePolicy(egressPolicy(t, acmeProvider(func(p map[string]any) {
		p["introspection_endpoint"] = "https://auth.acme.example/oauth/introspect"
	}), goodEgress(nil)), opts)
	if err != nil || p.EgressProviders["acme"].IntrospectionEndpoint != "https://auth.acme.example/oauth/introspect" {
		t.Fatalf("ParsePolicy = %v", err)
	}
	_, err = ParsePolicy(egressPolicy(t, acmeProvider(func(p map[string]any) {
		p["introspection_endpoint"] = "http://auth.acme.example/oauth/introspect"
	}), goodEgress(nil)), opts)
	if err == nil || !strings.Contains(err.Error(), "introspection_endpoint") {
		t.Errorf("http introspection outside loopback: %v", err)
	}
}
