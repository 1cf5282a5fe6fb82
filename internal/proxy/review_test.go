package proxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// sendRaw writes req to addr as raw HTTP/1.1 bytes with the given request
// target, extra header lines and body, so that tests can send what
// net/http's client would refuse or rewrite.
func sendRaw(t *testing.T, addr string, req *http.Request, target, extra, body string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", req.Method, target, req.URL.Host)
	for k, vs := range req.Header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString(extra)
	b.WriteString("Connection: close\r\n\r\n")
	b.WriteString(body)
	if _, err := c.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestFragmentInTargetIsBound: a '#' cannot appear in a request target, and
// what follows it is never dropped unverified: net/http would forward it
// upstream as part of the query. Core now refuses any '#' in the target at
// step 1 (400 request_path_noncanonical).
func TestFragmentInTargetIsBound(t *testing.T) {
	r := newRig(t, nil)
	req := r.sign(t, "GET", r.srv.URL, "/v1/orders/1?x=1", "orders.get", nil)
	resp := sendRaw(t, req.URL.Host, req, "/v1/orders/1?x=1#&admin=1", "", "")
	if resp.StatusCode != 400 {
		t.Errorf("query with an appended #&admin=1 = %d, want 400 request_path_noncanonical", resp.StatusCode)
	}
	for _, up := range r.seen {
		t.Errorf("upstream got %q", up.RequestURI)
	}
}

// TestConnectionNominatedHeaderIsNotCovered: a header that the Connection
// header nominates is hop-by-hop and never reaches the upstream, so it
// cannot be one the verifier checked: a covered header dropped that way
// must not be allowed.
func TestConnectionNominatedHeaderIsNotCovered(t *testing.T) {
	r := newRig(t, nil)
	req := r.sign(t, "GET", r.srv.URL, "/v1/orders/1", "orders.get", nil, "Idempotency-Key", "k-1")
	resp := sendRaw(t, req.URL.Host, req, "/v1/orders/1", "Connection: Idempotency-Key\r\n", "")
	if resp.StatusCode != 401 {
		t.Errorf("covered header nominated by Connection = %d, want 401", resp.StatusCode)
	}
	for _, up := range r.seen {
		t.Errorf("upstream got %q without Idempotency-Key %q", up.RequestURI, up.Header.Get("Idempotency-Key"))
	}
	// The ordinary tokens clients send still verify.
	ok := r.sign(t, "GET", r.srv.URL, "/v1/orders/2", "orders.get", nil, "Idempotency-Key", "k-2")
	if resp := sendRaw(t, ok.URL.Host, ok, "/v1/orders/2", "Connection: keep-alive\r\n", ""); resp.StatusCode != 200 {
		t.Errorf("Connection: keep-alive, close = %d, want 200", resp.StatusCode)
	}
}

// TestTrailersStripped: request trailers are header fields too; the
// caller's X-TrustPlane-* and Authorization must not reach the upstream
// that way.
func TestTrailersStripped(t *testing.T) {
	r := newRig(t, nil)
	body := `{"order":1}`
	req := r.sign(t, "POST", r.srv.URL, "/v1/orders", "orders.create", []byte(body))
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\nX-Trustplane-Subject: spoofed\r\nAuthorization: Bearer spoofed\r\nX-Other: kept\r\n\r\n", len(body), body)
	resp := sendRaw(t, req.URL.Host, req, "/v1/orders",
		"Transfer-Encoding: chunked\r\nTrailer: X-Trustplane-Subject, Authorization, X-Other\r\n", chunked)
	if resp.StatusCode != 200 {
		t.Fatalf("chunked POST with trailers = %d", resp.StatusCode)
	}
	r.mu.Lock()
	up := r.seen[0]
	r.mu.Unlock()
	for k, v := range up.Trailer {
		if strings.HasPrefix(strings.ToLower(k), "x-trustplane-") || strings.EqualFold(k, "Authorization") {
			t.Errorf("inbound trailer %s: %q reached the upstream", k, v)
		}
	}
	if got := up.Header.Values("X-Trustplane-Subject"); len(got) != 1 || got[0] != pSubject {
		t.Errorf("upstream X-TrustPlane-Subject = %q", got)
	}
}

// TestUnderscoreContextHeadersStripped: CGI-style upstreams (WSGI, Rack,
// PHP) read X_TrustPlane_Subject and X-TrustPlane-Subject as one name, so
// the caller's underscore spelling must not reach them beside ours.
func TestUnderscoreContextHeadersStripped(t *testing.T) {
	r := newRig(t, nil)
	req := r.sign(t, "GET", r.srv.URL, "/v1/orders/1", "orders.get", nil)
	resp := sendRaw(t, req.URL.Host, req, "/v1/orders/1", "X_TrustPlane_Subject: spoofed\r\nx-trustplane_jti: spoofed\r\n", "")
	if resp.StatusCode != 200 {
		t.Fatalf("GET = %d", resp.StatusCode)
	}
	r.mu.Lock()
	up := r.seen[0]
	r.mu.Unlock()
	for k, v := range up.Header {
		if n := strings.ReplaceAll(strings.ToLower(k), "_", "-"); strings.HasPrefix(n, "x-trustplane-") && v[0] == "spoofed" {
			t.Errorf("inbound %s: %q reached the upstream", k, v)
		}
	}
}

// TestTrustedProxiesIPv4Mapped: a prefix written in IPv4-mapped IPv6 form
// matches the IPv4 peers it names (peers are compared unmapped).
func TestTrustedProxiesIPv4Mapped(t *testing.T) {
	r := newRig(t, func(c *Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("::ffff:127.0.0.0/104")}
	})
	req, _ := http.NewRequest("GET", r.srv.URL+"/_tp/check", nil)
	req.Header.Set("X-Original-Uri", "/v1/orders/1")
	resp, _ := do(t, req)
	if got := resp.Header.Get("X-Trustplane-Reason"); got == "gateway_not_trusted" {
		t.Errorf("127.0.0.1 under ::ffff:127.0.0.0/104 = %s", got)
	}
}

// TestTargetForwardedUnchanged: the upstream receives the raw path as the
// caller sent and signed it, not net/url's re-encoding of it.
func TestTargetForwardedUnchanged(t *testing.T) {
	r := newRig(t, nil)
	for _, target := range []string{"/v1/orders/a|b?q=1", "/v1/orders/%7Euser", "/v1/orders/caf\u00e9"} {
		path, _, _ := strings.Cut(target, "?")
		req := r.signAs(t, "GET", r.srv.URL, target, path, "orders.get", nil)
		resp := sendRaw(t, req.URL.Host, req, target, "", "")
		if resp.StatusCode != 200 {
			t.Errorf("GET %s = %d", target, resp.StatusCode)
			continue
		}
		r.mu.Lock()
		got := r.seen[len(r.seen)-1].RequestURI
		r.mu.Unlock()
		if got != target {
			t.Errorf("upstream target = %q, want %q exactly", got, target)
		}
	}
}

// TestForwardedProtoIsTheSignedScheme: behind a TLS terminator
// (--external-scheme https) the upstream is told https, the scheme the
// caller signed, not the plain hop's http.
func TestForwardedProtoIsTheSignedScheme(t *testing.T) {
	r := newRig(t, func(c *Config) { c.ExternalScheme = "https" })
	host := strings.TrimPrefix(r.srv.URL, "http://")
	req := r.sign(t, "GET", "https://"+host, "/v1/orders/1", "orders.get", nil)
	req.URL.Scheme = "http"
	if resp, text := do(t, req); resp.StatusCode != 200 {
		t.Fatalf("GET = %d %s", resp.StatusCode, text)
	}
	r.mu.Lock()
	got := r.seen[len(r.seen)-1].Header.Get("X-Forwarded-Proto")
	r.mu.Unlock()
	if got != "https" {
		t.Errorf("upstream X-Forwarded-Proto = %q, want https", got)
	}
}

// TestNoUpgrade: a verified request asking for a protocol upgrade reaches
// the upstream as an ordinary request; nothing unbound can follow it.
func TestNoUpgrade(t *testing.T) {
	r := newRig(t, nil)
	req := r.sign(t, "GET", r.srv.URL, "/v1/orders/1", "orders.get", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	if resp, text := do(t, req); resp.StatusCode != 200 {
		t.Fatalf("GET = %d %s", resp.StatusCode, text)
	}
	r.mu.Lock()
	up := r.seen[len(r.seen)-1]
	r.mu.Unlock()
	if v := up.Header.Get("Upgrade"); v != "" {
		t.Errorf("upstream got Upgrade: %q", v)
	}
}
