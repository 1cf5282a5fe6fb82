package core

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/conformance"
	"github.com/tpcluster/tpcluster/internal/reason"
)

// loadDerived reads DERIVED-software-signed-request.json, the full signed
// example of SPEC's opening section.
func loadDerived(t testing.TB) *conformance.Derived {
	t.Helper()
	return conformance.LoadDerived(t)
}

// derivedRequest is the vector's request, exactly as a verifier would
// receive it.
func derivedRequest(t testing.TB, v *conformance.Derived) *Request {
	t.Helper()
	u, err := url.Parse(v.HTTPRequest.URL)
	if err != nil {
		t.Fatal(err)
	}
	h := make(map[string][]string)
	for k, val := range v.HTTPRequest.Headers {
		h[canonicalKey(k)] = []string{val}
	}
	return &Request{
		Method: v.HTTPRequest.Method, Scheme: u.Scheme, Authority: u.Host,
		RawPath: u.EscapedPath(), RawQuery: u.RawQuery,
		Header: h, Body: []byte(v.HTTPRequest.BodyUTF8),
	}
}

// TestDerivedAllowed decides the DERIVED vector with the clock at 1740000100
// and the trust material and policy SPEC's opening section gives: allowed.
func TestDerivedAllowed(t *testing.T) {
	v := loadDerived(t)
	f := newFixture(t, nil)
	if got := f.key.PublicKeyB64(); got != v.IssuerKey.PublicKeyB64URL {
		t.Fatalf("seed key = %s, vector's issuer key = %s", got, v.IssuerKey.PublicKeyB64URL)
	}
	d := f.p.Decide(t.Context(), derivedRequest(t, v))
	if d.Reason != reason.Allowed || d.Status != 200 {
		t.Fatalf("Decide(DERIVED) = %q (%d, %v), want allowed", d.Reason, d.Status, d.Err)
	}
	if d.RouteID != v.Expected.RouteID || d.TranscriptSHA256 != v.Expected.TranscriptSHA256 {
		t.Errorf("route %q digest %q, want %q %q", d.RouteID, d.TranscriptSHA256, v.Expected.RouteID, v.Expected.TranscriptSHA256)
	}
	if d.Subject != testSubject || d.Issuer != testIssuer || d.TrustDomain != testDomain ||
		d.JTI != "passport-v1-minimal-001" || d.KeyBinding != "software" {
		t.Errorf("decision context = %+v", d)
	}
	// The same request again is a replay.
	if d := f.p.Decide(t.Context(), derivedRequest(t, v)); d.Reason != reason.JTIReplay || d.Status != 409 {
		t.Errorf("Decide(DERIVED again) = %q (%d), want jti_replay (409)", d.Reason, d.Status)
	}
}

// TestDerivedTamper changes one field of the DERIVED request at a time: each
// is denied request_binding_mismatch or invalid_request_proof, and none
// touches the ledger.
func TestDerivedTamper(t *testing.T) {
	v := loadDerived(t)
	tests := []struct {
		name    string
		routeID string // --route-id pin; empty resolves by method and path
		tamper  func(r *Request)
		want    reason.Code
	}{
		{"method", "orders.create", func(r *Request) { r.Method = "PUT" }, reason.RequestBindingMismatch},
		{"path", "orders.create", func(r *Request) { r.RawPath = "/v1/orders/import" }, reason.RequestBindingMismatch},
		{"authority", "", func(r *Request) { r.Authority = "evil.example" }, reason.RequestBindingMismatch},
		{"scheme", "", func(r *Request) { r.Scheme = "http" }, reason.RequestBindingMismatch},
		{"query", "", func(r *Request) { r.RawQuery = "a=1" }, reason.RequestBindingMismatch},
		{"covered header", "", func(r *Request) { r.Header["Content-Type"] = []string{"text/plain"} }, reason.RequestBindingMismatch},
		{"body", "", func(r *Request) { r.Body = []byte(`{"order_id":"ord_124","amount":"42.00"}`) }, reason.RequestBindingMismatch},
		{"body and body hash", "", func(r *Request) {
			r.Body = []byte(`{}`)
			r.Header["X-Trustplane-Body-Sha256"] = []string{"44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}
		}, reason.RequestBindingMismatch},
		{"nonce", "orders.create", func(r *Request) { r.Header["X-Trustplane-Nonce"] = []string{"nonce-v1-002"} }, reason.RequestBindingMismatch},
		{"route", "orders.import", func(r *Request) {}, reason.RequestBindingMismatch},
		{"claimed digest", "", func(r *Request) {
			r.Header["X-Trustplane-Transcript-Sha256"] = []string{strings.Repeat("0", 64)}
		}, reason.RequestBindingMismatch},
		{"proof", "", func(r *Request) { r.Header["X-Trustplane-Proof"] = []string{strings.Repeat("A", 86)} }, reason.InvalidRequestProof},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.RouteID = tt.routeID })
			r := derivedRequest(t, v)
			tt.tamper(r)
			d := f.p.Decide(t.Context(), r)
			if d.Reason != tt.want {
				t.Errorf("Decide(tampered %s) = %q (%v), want %q", tt.name, d.Reason, d.Err, tt.want)
			}
			if n := f.ledger.calls.Load(); n != 0 {
				t.Errorf("ledger called %d times for a denied request", n)
			}
			// The untampered request still passes afterwards, on the same
			// ledger without the pin: the denial burnt nothing.
			cfg := f.cfg
			cfg.RouteID = ""
			p, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if d := p.Decide(t.Context(), derivedRequest(t, v)); d.Reason != reason.Allowed {
				t.Errorf("Decide(untampered) after the tamper = %q (%v), want allowed", d.Reason, d.Err)
			}
		})
	}
}

// TestDerivedClock checks the vector against the time window: valid until
// exp + skew, not before iat - skew.
func TestDerivedClock(t *testing.T) {
	v := loadDerived(t)
	tests := []struct {
		unix int64
		want reason.Code
	}{
		{1740000000 - 31, reason.PassportNotYetValid},
		{1740000000 - 30, reason.Allowed},
		{1740000300 + 29, reason.Allowed},
		{1740000300 + 30, reason.PassportExpired},
	}
	for _, tt := range tests {
		f := newFixture(t, nil)
		f.now = time.Unix(tt.unix, 0)
		if d := f.p.Decide(t.Context(), derivedRequest(t, v)); d.Reason != tt.want {
			t.Errorf("Decide(DERIVED at %d) = %q (%v), want %q", tt.unix, d.Reason, d.Err, tt.want)
		}
	}
}
