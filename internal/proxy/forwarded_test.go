package proxy

import (
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/signer"
)

// signClaiming signs a bodiless request under a self-issued passport that
// claims cnf.key_binding kb.
func (r *rig) signClaiming(t *testing.T, method, base, target, routeID, kb string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, base+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := r.key.MintPassport(signer.PassportOptions{Issuer: pIssuer, Subject: pSubject, Audience: pAudience,
		TrustDomain: pDomain, KID: "k1", IssuedAt: time.Now(), TTL: time.Minute, KeyBinding: kb})
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.key.Sign(tok, &signer.Request{Method: method, Scheme: req.URL.Scheme, Authority: req.URL.Host,
		Path: req.URL.EscapedPath(), RawQuery: req.URL.RawQuery, RouteID: routeID})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range s.Headers {
		req.Header.Set(h.Name, h.Value)
	}
	return req
}

// TestForwardedKeyBindingIsEffective: a self-issued passport that claims
// hardware_local, on a software route, is allowed, and the upstream (proxy
// mode), the gateway (check mode) and the audit record all get the
// effective class, software (SPEC §2.1), never the caller's own word.
func TestForwardedKeyBindingIsEffective(t *testing.T) {
	r := newRig(t, nil)
	resp, text := do(t, r.signClaiming(t, "GET", r.srv.URL, "/v1/orders/1", "orders.get", "hardware_local"))
	if resp.StatusCode != 200 {
		t.Fatalf("proxy GET = %d %s", resp.StatusCode, text)
	}
	r.mu.Lock()
	got := r.seen[len(r.seen)-1].Header.Values("X-Trustplane-Key-Binding")
	rec := r.recs[len(r.recs)-1]
	r.mu.Unlock()
	if len(got) != 1 || got[0] != "software" {
		t.Errorf("upstream X-TrustPlane-Key-Binding = %q, want [software]", got)
	}
	if rec.Decision.KeyBinding != "software" {
		t.Errorf("recorded key binding = %q, want software", rec.Decision.KeyBinding)
	}

	q := r.signClaiming(t, "GET", "http://orders.gw.example", "/v1/orders/2", "orders.get", "attested_workload")
	c, _ := http.NewRequest("GET", r.srv.URL+"/_tp/check", nil)
	maps.Copy(c.Header, q.Header)
	c.Header.Set("X-Original-Method", q.Method)
	c.Header.Set("X-Original-Uri", q.URL.RequestURI())
	c.Header.Set("X-Forwarded-Host", q.URL.Host)
	c.Header.Set("X-Forwarded-Proto", "http")
	resp, text = do(t, c)
	if resp.StatusCode != 200 || resp.Header.Get("X-Trustplane-Key-Binding") != "software" {
		t.Errorf("check = %d %s, X-TrustPlane-Key-Binding %q; want 200, software", resp.StatusCode, text, resp.Header.Get("X-Trustplane-Key-Binding"))
	}
}

// TestDotSegmentBehindPathParameter: a caller that signs a dot segment
// hidden behind a path parameter, which {id} would match, is refused at
// step 1 and nothing reaches the upstream, where Tomcat or Spring would
// cut "..;" to ".." and serve another path than the one verified.
func TestDotSegmentBehindPathParameter(t *testing.T) {
	r := newRig(t, nil)
	for _, target := range []string{"/v1/orders/..;", "/v1/orders/..;x", "/v1/orders/.%3B", "/v1/orders/;x"} {
		req := r.signAs(t, "GET", r.srv.URL, "/v1/orders/1", target, "orders.get", nil)
		if resp := sendRaw(t, req.URL.Host, req, target, "", ""); resp.StatusCode != 400 {
			t.Errorf("GET %s = %d, want 400 request_path_noncanonical", target, resp.StatusCode)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, up := range r.seen {
		t.Errorf("upstream got %q", up.RequestURI)
	}
}
