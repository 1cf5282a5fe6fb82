package proxy

import (
	"bytes"
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tpcluster/tpcluster/internal/proxy/proxytest"
	"github.com/tpcluster/tpcluster/internal/signer"
	"github.com/tpcluster/tpcluster/internal/transcript"
)

const (
	pIssuer   = "https://issuer.proxy.example"
	pDomain   = "proxy.local"
	pAudience = "orders-api"
	pSubject  = "spiffe://proxy.local/workload/orders"
)

// rig is a Handler over a real pipeline and a real ledger on an embedded
// NATS server, with recording telemetry and a recording upstream.
type rig struct {
	key     *signer.Key
	h       *Handler
	srv     *httptest.Server
	spans   *tracetest.SpanRecorder
	metrics *sdkmetric.ManualReader
	up      *httptest.Server

	mu   sync.Mutex
	seen []*http.Request
	body [][]byte
	recs []Record
}

func newRig(t testing.TB, mutate func(*Config)) *rig {
	t.Helper()
	return buildRig(t, nil, mutate)
}

// buildRig is newRig with edit applied to the policy document (adding
// routes, providers) before it is parsed.
func buildRig(t testing.TB, edit func(policy map[string]any, src []any), mutate func(*Config)) *rig {
	t.Helper()
	key, err := signer.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{key: key, spans: tracetest.NewSpanRecorder(), metrics: sdkmetric.NewManualReader()}
	pipe := proxytest.Pipeline(t, proxytest.World{Issuer: pIssuer, TrustDomain: pDomain, Audience: pAudience, Subject: pSubject, Key: key},
		[]proxytest.Route{
			{ID: "orders.create", Method: "POST", Path: "/v1/orders"},
			{ID: "orders.get", Method: "GET", Path: "/v1/orders/{id}"},
			{ID: "orders.gw", Method: "POST", Path: "/v1/gw", Extra: map[string]any{"body_hash_from_gateway": true}},
			{ID: "orders.delete", Method: "DELETE", Path: "/v1/orders/{id}"},
			{ID: "orders.keep", Method: "POST", Path: "/v1/keep", Extra: map[string]any{"keep_override_headers": true}},
			{ID: "orders.asserted", Method: "GET", Path: "/v1/asserted/{id}", Extra: map[string]any{
				"backend_assertion": map[string]any{"audience": "orders-backend", "ttl_seconds": 30}}},
		}, edit)

	r.up = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.seen, r.body = append(r.seen, req), append(r.body, b)
		r.mu.Unlock()
		w.Header().Set("X-Request-Id", "upstream-made-this-up")
		io.WriteString(w, "upstream ok")
	}))
	t.Cleanup(r.up.Close)
	upURL, _ := url.Parse(r.up.URL)
	cfg := Config{
		Decider:        pipe,
		Upstream:       upURL,
		MaxBodyBytes:   1024,
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans)),
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.metrics)),
		Record: func(_ context.Context, rec *Record) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.recs = append(r.recs, *rec)
			return nil
		},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.h = h
	r.srv = httptest.NewServer(h)
	t.Cleanup(r.srv.Close)
	return r
}

// sign returns a signed request for base+target, covering hdrs.
func (r *rig) sign(t *testing.T, method, base, target, routeID string, body []byte, hdrs ...string) *http.Request {
	t.Helper()
	return r.signAs(t, method, base, target, "", routeID, body, hdrs...)
}

// signAs is sign with the path the caller signs given raw (for requests
// written to the wire by hand); empty means the Go client's encoding.
func (r *rig) signAs(t *testing.T, method, base, target, rawPath, routeID string, body []byte, hdrs ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, base+target, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var hs []transcript.Header
	for i := 0; i+1 < len(hdrs); i += 2 {
		hs = append(hs, transcript.Header{Name: hdrs[i], Value: hdrs[i+1]})
		req.Header.Add(hdrs[i], hdrs[i+1])
	}
	tok, err := r.key.MintPassport(signer.PassportOptions{Issuer: pIssuer, Subject: pSubject, Audience: pAudience,
		TrustDomain: pDomain, KID: "k1", IssuedAt: time.Now(), TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if rawPath == "" {
		rawPath = req.URL.EscapedPath()
	}
	s, err := r.key.Sign(tok, &signer.Request{Method: method, Scheme: req.URL.Scheme, Authority: req.URL.Host,
		Path: rawPath, RawQuery: req.URL.RawQuery, Body: body, Headers: hs, RouteID: routeID})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range s.Headers {
		req.Header.Set(h.Name, h.Value)
	}
	return req
}

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestProxyForwards(t *testing.T) {
	r := newRig(t, nil)
	body := []byte(`{"order":1}`)
	req := r.sign(t, "POST", r.srv.URL, "/v1/orders?b=1&a=2", "orders.create", body, "Content-Type", "application/json")
	req.Header.Set("X-TrustPlane-Subject", "spoofed")
	req.Header.Set("X-Trustplane-Anything", "spoofed too")
	req.Header.Set("X-Request-Id", "caller.id-1")
	resp, text := do(t, req)
	if resp.StatusCode != 200 || text != "upstream ok" {
		t.Fatalf("POST = %d %q", resp.StatusCode, text)
	}
	if got := resp.Header.Values("X-Request-Id"); len(got) != 1 || got[0] != "caller.id-1" {
		t.Errorf("answer X-Request-Id = %q, want [caller.id-1]", got)
	}
	r.mu.Lock()
	up, upBody := r.seen[0], r.body[0]
	r.mu.Unlock()
	if up.RequestURI != "/v1/orders?b=1&a=2" || !bytes.Equal(upBody, body) {
		t.Errorf("upstream got %s %q", up.RequestURI, upBody)
	}
	if got := up.Header.Values("X-Trustplane-Subject"); len(got) != 1 || got[0] != pSubject {
		t.Errorf("upstream X-TrustPlane-Subject = %q", got)
	}
	if got := up.Header.Values("X-Trustplane-Anything"); len(got) != 0 {
		t.Errorf("inbound X-TrustPlane-Anything reached the upstream: %q", got)
	}
	if got := up.Header.Get("Authorization"); got != "" {
		t.Error("Authorization reached the upstream")
	}
	if got := up.Header.Get("X-Request-Id"); got != "caller.id-1" {
		t.Errorf("upstream X-Request-Id = %q", got)
	}
}

func TestProxyForwardProofHeaders(t *testing.T) {
	r := newRig(t, func(c *Config) { c.ForwardProofHeaders = true })
	req := r.sign(t, "GET", r.srv.URL, "/v1/orders/1", "orders.get", nil)
	req.Header.Set("X-TrustPlane-Subject", "spoofed")
	if resp, text := do(t, req); resp.StatusCode != 200 {
		t.Fatalf("GET = %d %s", resp.StatusCode, text)
	}
	up := r.seen[0]
	for _, h := range []string{"Authorization", "X-Trustplane-Proof", "X-Trustplane-Nonce", "X-Trustplane-Transcript-Sha256", "X-Trustplane-Body-Sha256"} {
		if up.Header.Get(h) == "" {
			t.Errorf("--forward-proof-headers dropped %s", h)
		}
	}
	if got := up.Header.Values("X-Trustplane-Subject"); len(got) != 1 || got[0] != pSubject {
		t.Errorf("upstream X-TrustPlane-Subject = %q", got)
	}
}

func TestDenials(t *testing.T) {
	r := newRig(t, nil)
	tests := []struct {
		name   string
		req    func() *http.Request
		status int
		reason string
	}{
		{"no passport", func() *http.Request { q, _ := http.NewRequest("GET", r.srv.URL+"/v1/orders/1", nil); return q }, 401, "passport_missing"},
		{"dot segment", func() *http.Request {
			q := r.sign(t, "GET", r.srv.URL, "/v1/orders/1", "orders.get", nil)
			q.URL.Opaque = "/v1/../v1/orders/1"
			return q
		}, 400, "request_path_noncanonical"},
		{"body too large", func() *http.Request {
			return r.sign(t, "POST", r.srv.URL, "/v1/orders", "orders.create", bytes.Repeat([]byte("x"), 2048))
		}, 413, "request_body_too_large"},
		{"unknown route", func() *http.Request { return r.sign(t, "GET", r.srv.URL, "/v2/x", "x", nil) }, 404, "bundle_route_missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, text := do(t, tt.req())
			want := `{"allowed":false,"reason":"` + tt.reason + `","request_id":"` + resp.Header.Get("X-Request-Id") + `"}`
			if resp.StatusCode != tt.status || text != want {
				t.Errorf("%s = %d %s, want %d %s", tt.name, resp.StatusCode, text, tt.status, want)
			}
		})
	}
	if len(r.seen) != 0 {
		t.Errorf("%d denied requests reached the upstream", len(r.seen))
	}
}

func TestCheckMode(t *testing.T) {
	r := newRig(t, nil)
	gw := "http://orders.gw.example"
	check := func(q *http.Request, keepBody bool) *http.Request {
		var body io.Reader
		if keepBody && q.Body != nil {
			b, _ := io.ReadAll(q.Body)
			body = bytes.NewReader(b)
		}
		c, _ := http.NewRequest("POST", r.srv.URL+"/_tp/check", body)
		maps.Copy(c.Header, q.Header)
		c.Header.Set("X-Original-Method", q.Method)
		c.Header.Set("X-Original-Uri", q.URL.RequestURI())
		c.Header.Set("X-Forwarded-Host", q.URL.Host)
		c.Header.Set("X-Forwarded-Proto", "http")
		return c
	}
	get := r.sign(t, "GET", gw, "/v1/orders/7?x=1", "orders.get", nil)
	resp, text := do(t, check(get, false))
	if resp.StatusCode != 200 || resp.Header.Get("X-Trustplane-Subject") != pSubject {
		t.Fatalf("check GET = %d %s %v", resp.StatusCode, text, resp.Header)
	}
	// Replay: 409 becomes 403 for nginx, with the real status in headers.
	resp, text = do(t, check(get, false))
	if resp.StatusCode != 403 || resp.Header.Get("X-Trustplane-Reason") != "jti_replay" || resp.Header.Get("X-Trustplane-Status") != "409" {
		t.Errorf("check replay = %d %s %v", resp.StatusCode, text, resp.Header)
	}
	// A 401-class denial stays 401.
	tampered := r.sign(t, "GET", gw, "/v1/orders/8", "orders.get", nil)
	tampered.URL.Path = "/v1/orders/9"
	if resp, text := do(t, check(tampered, false)); resp.StatusCode != 401 || resp.Header.Get("X-Trustplane-Reason") != "request_binding_mismatch" {
		t.Errorf("check tampered = %d %s", resp.StatusCode, text)
	}
	// Body from the gateway's hash: allowed only on routes that say so.
	gwPost := r.sign(t, "POST", gw, "/v1/gw", "orders.gw", []byte(`{"a":1}`))
	if resp, text := do(t, check(gwPost, false)); resp.StatusCode != 200 {
		t.Errorf("check POST with gateway body hash = %d %s", resp.StatusCode, text)
	}
	post := r.sign(t, "POST", gw, "/v1/orders", "orders.create", []byte(`{"a":1}`))
	if resp, _ := do(t, check(post, false)); resp.Header.Get("X-Trustplane-Reason") != "request_binding_mismatch" {
		t.Errorf("check POST without body on a bound route = %s, want request_binding_mismatch", resp.Header.Get("X-Trustplane-Reason"))
	}
	// A gateway that forwards the body (Traefik forwardBody, Envoy
	// with_request_body) binds it.
	post2 := r.sign(t, "POST", gw, "/v1/orders", "orders.create", []byte(`{"a":2}`))
	if resp, text := do(t, check(post2, true)); resp.StatusCode != 200 {
		t.Errorf("check POST with body = %d %s", resp.StatusCode, text)
	}
}

func TestCheckModeUntrustedPeer(t *testing.T) {
	r := newRig(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.9.9.9/32")} })
	req, _ := http.NewRequest("GET", r.srv.URL+"/_tp/check", nil)
	req.Header.Set("X-Original-Uri", "/v1/orders/1")
	resp, text := do(t, req)
	if resp.StatusCode != 403 || resp.Header.Get("X-Trustplane-Reason") != "gateway_not_trusted" || !strings.Contains(text, "gateway_not_trusted") {
		t.Errorf("untrusted check = %d %s", resp.StatusCode, text)
	}
}

// TestForwardedHeadersTrust: X-Forwarded-Host is honoured only from trusted
// proxies, so a direct caller cannot pick the authority that is checked.
func TestForwardedHeadersTrust(t *testing.T) {
	r := newRig(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.9.9.9/32")} })
	req := r.sign(t, "GET", "http://orders.example", "/v1/orders/1", "orders.get", nil)
	req.URL.Host, req.Host = strings.TrimPrefix(r.srv.URL, "http://"), ""
	req.Header.Set("X-Forwarded-Host", "orders.example")
	if resp, text := do(t, req); resp.StatusCode != 401 || !strings.Contains(text, "request_binding_mismatch") {
		t.Errorf("untrusted X-Forwarded-Host = %d %s, want 401 request_binding_mismatch", resp.StatusCode, text)
	}
	r2 := newRig(t, nil) // loopback trusted by default
	req = r2.sign(t, "GET", "http://orders.example", "/v1/orders/1", "orders.get", nil)
	req.URL.Host, req.Host = strings.TrimPrefix(r2.srv.URL, "http://"), ""
	req.Header.Set("X-Forwarded-Host", "orders.example")
	if resp, text := do(t, req); resp.StatusCode != 200 {
		t.Errorf("trusted X-Forwarded-Host = %d %s", resp.StatusCode, text)
	}
}

// TestTelemetry: one span per decision with outcome, reason and route and
// nothing secret; decisions counted by reason.
func TestTelemetry(t *testing.T) {
	r := newRig(t, nil)
	req := r.sign(t, "GET", r.srv.URL, "/v1/orders/1", "orders.get", nil)
	do(t, req)
	again := req.Clone(context.Background())
	do(t, again)
	spans := r.spans.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	want := []string{"allowed", "jti_replay"}
	for i, s := range spans {
		attrs := map[attribute.Key]string{}
		for _, kv := range s.Attributes() {
			attrs[kv.Key] = kv.Value.Emit()
			if v := kv.Value.Emit(); strings.Contains(v, "eyJ") || strings.Contains(v, req.Header.Get("X-Trustplane-Proof")) {
				t.Errorf("span attribute %s carries a passport or proof", kv.Key)
			}
		}
		if attrs["tpcluster.reason_code"] != want[i] || attrs["tpcluster.route_id"] != "orders.get" {
			t.Errorf("span %d attributes = %v", i, attrs)
		}
	}
	var rm metricdata.ResourceMetrics
	if err := r.metrics.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "tpcluster.decisions" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				v, _ := dp.Attributes.Value("reason_code")
				counts[v.AsString()] += dp.Value
			}
		}
	}
	if counts["allowed"] != 1 || counts["jti_replay"] != 1 {
		t.Errorf("tpcluster.decisions by reason = %v", counts)
	}
	if len(r.recs) != 2 || r.recs[0].Decision.Reason != "allowed" || r.recs[0].RequestID == "" {
		t.Errorf("records = %+v", r.recs)
	}
}

func TestRequestID(t *testing.T) {
	for _, tt := range []struct {
		in   string
		keep bool
	}{
		{"abc-123_X.y", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{"", false},
		{"has space", false},
		{"quote\"", false},
		{"ünicode", false},
	} {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("X-Request-Id", tt.in)
		got := requestID(req)
		if (got == tt.in) != tt.keep {
			t.Errorf("requestID(%q) = %q, keep=%v", tt.in, got, tt.keep)
		}
		if !tt.keep && len(got) != 36 {
			t.Errorf("requestID(%q) = %q, want a new UUID", tt.in, got)
		}
	}
}

func TestSplitTarget(t *testing.T) {
	for _, tt := range []struct{ in, path, query string }{
		{"/a/b?x=1&y", "/a/b", "x=1&y"},
		{"/a%2Fb", "/a%2Fb", ""},
		{"/a?", "/a", ""},
		{"http://h.example/p?q=1", "/p", "q=1"},
		{"http://p/x?q=1", "/x", "q=1"},
		{"http://s:8080/v1/s", "/v1/s", ""},
		{"http://h.example?q=1", "", "q=1"},
		{"/p?q=1#&admin=1", "/p", "q=1#&admin=1"},
	} {
		p, q := splitTarget(tt.in)
		if p != tt.path || q != tt.query {
			t.Errorf("splitTarget(%q) = %q %q, want %q %q", tt.in, p, q, tt.path, tt.query)
		}
	}
}
