package proxy

import (
	"errors"
	"maps"
	"net/http"
	"strings"
	"testing"

	"github.com/tpcluster/tpcluster/backendjwt"
	"github.com/tpcluster/tpcluster/internal/assertion"
	"github.com/tpcluster/tpcluster/internal/keyfile"
)

const fleetIssuer = "https://verifiers.proxy.example"

// assertedRig is a rig whose handler mints assertions with a fresh node
// key, and a backendjwt verifier that reads the rig's own JWKS.
func assertedRig(t *testing.T) (*rig, *keyfile.PrivateKey, *backendjwt.Verifier) {
	t.Helper()
	key, err := keyfile.Generate("node-a-1")
	if err != nil {
		t.Fatal(err)
	}
	m, err := assertion.New(assertion.Config{Issuer: fleetIssuer, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, func(c *Config) { c.Assertions = m })
	v, err := backendjwt.New(backendjwt.Config{JWKSURL: r.srv.URL + "/_tp/jwks.json", Issuer: fleetIssuer, Audience: "orders-backend"})
	if err != nil {
		t.Fatal(err)
	}
	return r, key, v
}

func TestBackendAssertionForwarded(t *testing.T) {
	r, key, v := assertedRig(t)
	req := r.sign(t, "GET", r.srv.URL, "/v1/asserted/7?b=1&a=2", "orders.asserted", nil)
	// A caller's own assertion header never reaches the upstream.
	req.Header.Set("X-TrustPlane-Assertion", "caller-made.this.up")
	req.Header.Set("X-Request-Id", "asserted-1")
	if resp, text := do(t, req); resp.StatusCode != 200 {
		t.Fatalf("asserted GET = %d %s", resp.StatusCode, text)
	}
	r.mu.Lock()
	// The recorded request's context ended with its handler.
	up, rec := r.seen[0].WithContext(t.Context()), r.recs[0]
	r.mu.Unlock()
	if n := len(up.Header.Values("X-Trustplane-Assertion")); n != 1 {
		t.Fatalf("upstream got %d assertion headers, want 1", n)
	}
	c, err := v.VerifyRequest(up, backendjwt.RequestOptions{})
	if err != nil {
		t.Fatalf("upstream verify: %v", err)
	}
	if c.Audience != "orders-backend" || c.Audience == pAudience {
		t.Errorf("aud = %q, want the route's backend audience", c.Audience)
	}
	checks := map[string][2]string{
		"iss":               {c.Issuer, fleetIssuer},
		"sub":               {c.Subject, pSubject},
		"passport_jti":      {c.PassportJTI, rec.Decision.JTI},
		"route_id":          {c.RouteID, "orders.asserted"},
		"method":            {c.Method, "GET"},
		"target":            {c.Target, "/v1/asserted/7?b=1&a=2"},
		"transcript_sha256": {c.TranscriptSHA256, rec.Decision.TranscriptSHA256},
		"key_binding":       {c.KeyBinding, "software"},
		"trust_domain":      {c.TrustDomain, pDomain},
		"event_id":          {c.EventID, rec.EventID},
		"request_id":        {c.RequestID, "asserted-1"},
		"jti (audit)":       {c.ID, rec.AssertionJTI},
		"kid (audit)":       {key.KID(), rec.AssertionKID},
	}
	for name, got := range checks {
		if got[0] != got[1] || got[0] == "" {
			t.Errorf("%s = %q, want %q (non-empty)", name, got[0], got[1])
		}
	}
	if c.ID == c.PassportJTI {
		t.Error("the assertion reuses the passport's jti")
	}
	if c.ExpiresAt-c.IssuedAt != 30 || c.NotBefore != c.IssuedAt {
		t.Errorf("iat %d nbf %d exp %d, want a 30 s window from iat", c.IssuedAt, c.NotBefore, c.ExpiresAt)
	}

	// Another request gets another assertion: never cached or reused.
	if resp, text := do(t, r.sign(t, "GET", r.srv.URL, "/v1/asserted/8", "orders.asserted", nil)); resp.StatusCode != 200 {
		t.Fatalf("second asserted GET = %d %s", resp.StatusCode, text)
	}
	r.mu.Lock()
	up2 := r.seen[1].WithContext(t.Context())
	r.mu.Unlock()
	c2, err := v.VerifyRequest(up2, backendjwt.RequestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c2.ID == c.ID || c2.EventID == c.EventID {
		t.Errorf("second assertion repeats jti %q or event %q", c2.ID, c2.EventID)
	}
	// The first assertion does not fit the second request.
	up2.Header.Set("X-Trustplane-Assertion", up.Header.Get("X-Trustplane-Assertion"))
	if _, err := v.VerifyRequest(up2, backendjwt.RequestOptions{}); !errors.Is(err, backendjwt.ErrInvalid) {
		t.Errorf("assertion of /v1/asserted/7 on /v1/asserted/8: err = %v, want ErrInvalid", err)
	}

	// A route that asks for none gets none, and the caller's is removed.
	plain := r.sign(t, "GET", r.srv.URL, "/v1/orders/9", "orders.get", nil)
	plain.Header.Set("X-TrustPlane-Assertion", "caller-made.this.up")
	if resp, text := do(t, plain); resp.StatusCode != 200 {
		t.Fatalf("plain GET = %d %s", resp.StatusCode, text)
	}
	r.mu.Lock()
	up3, rec3 := r.seen[2], r.recs[2]
	r.mu.Unlock()
	if got := up3.Header.Values("X-Trustplane-Assertion"); len(got) != 0 {
		t.Errorf("route without backend_assertion forwarded %q", got)
	}
	if rec3.AssertionJTI != "" || rec3.AssertionKID != "" {
		t.Errorf("record without an assertion names one: %q %q", rec3.AssertionJTI, rec3.AssertionKID)
	}
}

func TestBackendAssertionUnavailable(t *testing.T) {
	r := newRig(t, nil) // no minter: no --assertion-key
	resp, text := do(t, r.sign(t, "GET", r.srv.URL, "/v1/asserted/7", "orders.asserted", nil))
	if resp.StatusCode != 503 || !strings.Contains(text, `"reason":"backend_assertion_unavailable"`) {
		t.Errorf("asserted route without a key = %d %s, want 503 backend_assertion_unavailable", resp.StatusCode, text)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) != 0 {
		t.Errorf("upstream reached %d times without the assertion it expects", len(r.seen))
	}
	if len(r.recs) != 1 || r.recs[0].Decision.Reason != "backend_assertion_unavailable" || r.recs[0].Decision.Allowed() ||
		r.recs[0].Decision.Detail != "assertion_key" {
		t.Errorf("records = %+v", r.recs)
	}
	if resp, _ := do(t, mustRequest(t, "GET", r.srv.URL+"/_tp/jwks.json")); resp.StatusCode != 404 {
		t.Errorf("jwks without a key = %d, want 404", resp.StatusCode)
	}
}

func TestBackendAssertionNotACallerCredential(t *testing.T) {
	r, _, _ := assertedRig(t)
	if resp, text := do(t, r.sign(t, "GET", r.srv.URL, "/v1/asserted/7", "orders.asserted", nil)); resp.StatusCode != 200 {
		t.Fatalf("asserted GET = %d %s", resp.StatusCode, text)
	}
	r.mu.Lock()
	tok := r.seen[0].Header.Get("X-Trustplane-Assertion")
	r.mu.Unlock()
	// Presented alone, in its own header: no passport.
	alone := mustRequest(t, "GET", r.srv.URL+"/v1/asserted/7")
	alone.Header.Set("X-TrustPlane-Assertion", tok)
	if resp, text := do(t, alone); resp.StatusCode != 401 || !strings.Contains(text, `"reason":"passport_missing"`) {
		t.Errorf("assertion in its header = %d %s, want 401 passport_missing", resp.StatusCode, text)
	}
	// Presented as the bearer passport, with or without the proof headers
	// of a real request.
	bearer := mustRequest(t, "GET", r.srv.URL+"/v1/asserted/7")
	bearer.Header.Set("Authorization", "Bearer "+tok)
	if resp, text := do(t, bearer); resp.StatusCode != 401 || !strings.Contains(text, `"reason":"passport_malformed"`) {
		t.Errorf("assertion as bearer = %d %s, want 401 passport_malformed", resp.StatusCode, text)
	}
	signed := r.sign(t, "GET", r.srv.URL, "/v1/asserted/8", "orders.asserted", nil)
	signed.Header.Set("Authorization", "Bearer "+tok)
	if resp, text := do(t, signed); resp.StatusCode != 401 || !strings.Contains(text, `"reason":"passport_malformed"`) {
		t.Errorf("assertion as bearer with proof headers = %d %s, want 401 passport_malformed", resp.StatusCode, text)
	}
}

func TestBackendAssertionCheckMode(t *testing.T) {
	r, _, v := assertedRig(t)
	gw := "http://orders.gw.example"
	q := r.sign(t, "GET", gw, "/v1/asserted/5?x=1", "orders.asserted", nil)
	c, _ := http.NewRequest("GET", r.srv.URL+"/_tp/check", nil)
	maps.Copy(c.Header, q.Header)
	c.Header.Set("X-Original-Method", "GET")
	c.Header.Set("X-Original-Uri", "/v1/asserted/5?x=1")
	c.Header.Set("X-Forwarded-Host", q.URL.Host)
	c.Header.Set("X-Forwarded-Proto", "http")
	resp, text := do(t, c)
	if resp.StatusCode != 200 {
		t.Fatalf("check = %d %s", resp.StatusCode, text)
	}
	// What the gateway forwards upstream: the original request with the
	// assertion header copied from the check answer.
	up := mustRequest(t, "GET", "http://backend/v1/asserted/5?x=1")
	up.RequestURI = "/v1/asserted/5?x=1"
	up.Header.Set(backendjwt.Header, resp.Header.Get("X-Trustplane-Assertion"))
	cl, err := v.VerifyRequest(up, backendjwt.RequestOptions{})
	if err != nil {
		t.Fatalf("check-mode assertion: %v", err)
	}
	if cl.RouteID != "orders.asserted" || cl.Target != "/v1/asserted/5?x=1" {
		t.Errorf("claims = %+v", cl)
	}
}

func TestJWKSEndpoint(t *testing.T) {
	r, key, _ := assertedRig(t)
	resp, text := do(t, mustRequest(t, "GET", r.srv.URL+"/_tp/jwks.json"))
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "max-age=60" {
		t.Fatalf("jwks = %d %v", resp.StatusCode, resp.Header)
	}
	if !strings.Contains(text, `"kid":"`+key.KID()+`"`) || !strings.Contains(text, `"crv":"Ed25519"`) {
		t.Errorf("jwks = %s", text)
	}
	if resp, _ := do(t, mustRequest(t, "POST", r.srv.URL+"/_tp/jwks.json")); resp.StatusCode != 405 {
		t.Errorf("POST jwks = %d, want 405", resp.StatusCode)
	}
}

func TestUpstreamTarget(t *testing.T) {
	for in, want := range map[string]string{
		"/v1/a?b=1":               "/v1/a?b=1",
		"/v1/a?":                  "/v1/a?",
		"/v1/a":                   "/v1/a",
		"http://h.example/v1/a?x": "/v1/a?x",
	} {
		if got := upstreamTarget(in); got != want {
			t.Errorf("upstreamTarget(%q) = %q, want %q", in, got, want)
		}
	}
}
