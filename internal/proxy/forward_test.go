package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// rawExchange writes head (request line and header lines, without the
// blank line) and body to addr, and returns the status, the deny reason of
// a §6 body (or the check mode's X-TrustPlane-Reason) and the body text.
func rawExchange(t *testing.T, addr, head, body string) (int, string, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, head+"Connection: close\r\n\r\n"+body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	code := resp.Header.Get("X-Trustplane-Reason")
	if code == "" {
		if _, after, ok := strings.Cut(string(b), `"reason":"`); ok {
			code, _, _ = strings.Cut(after, `"`)
		}
	}
	return resp.StatusCode, code, string(b)
}

// head renders req's method, the given target and req's headers (plus
// extra lines) as raw HTTP/1.1 header bytes.
func head(req *http.Request, method, target, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, req.URL.Host)
	for k, vs := range req.Header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString(extra)
	return b.String()
}

func (r *rig) upstreamCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

func (r *rig) last(t *testing.T) (*http.Request, []byte) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) == 0 {
		t.Fatal("nothing reached the upstream")
	}
	return r.seen[len(r.seen)-1], r.body[len(r.body)-1]
}

// TestQueryForwardedByteForByte: Go's ReverseProxy re-encodes a query that
// holds ';' ("a=1;admin=1" became "a=1%3Badmin=1"); the upstream must get
// the raw target the proof bound, byte for byte.
func TestQueryForwardedByteForByte(t *testing.T) {
	r := newRig(t, nil)
	for _, target := range []string{
		"/v1/orders/1?a=1;admin=1",
		"/v1/orders/a%3Bb?x=%3B&y=1;z",
		"/v1/orders/1?a=%3b;b=+1&c", // lower-case escape and '+' kept as sent
		"/v1/orders/2?",
	} {
		t.Run(target, func(t *testing.T) {
			path, query, _ := strings.Cut(target, "?")
			// signAs parses the target with net/url, which keeps RawQuery raw.
			req := r.signAs(t, "GET", r.srv.URL, path+"?"+query, path, "orders.get", nil)
			status, code, _ := rawExchange(t, req.URL.Host, head(req, "GET", target, ""), "")
			if status != 200 {
				t.Fatalf("GET %s = %d %s", target, status, code)
			}
			up, _ := r.last(t)
			if up.RequestURI != target {
				t.Errorf("upstream target = %q, want %q byte for byte", up.RequestURI, target)
			}
		})
	}
}

// TestTrailersNeverForwarded: a chunked body's trailer fields are bound by
// no transcript; the upstream gets the verified body with a length and no
// trailers.
func TestTrailersNeverForwarded(t *testing.T) {
	r := newRig(t, nil)
	body := []byte(`{"order":1}`)
	req := r.sign(t, "POST", r.srv.URL, "/v1/orders", "orders.create", body, "Content-Type", "application/json")
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\nX-Evil: 1\r\nX-TrustPlane-Subject: spoofed\r\nContent-Type: text/plain\r\n\r\n", len(body), body)
	status, code, _ := rawExchange(t, req.URL.Host,
		head(req, "POST", "/v1/orders", "Transfer-Encoding: chunked\r\nTrailer: X-Evil, X-TrustPlane-Subject, Content-Type\r\nTE: trailers\r\n"), chunked)
	if status != 200 {
		t.Fatalf("chunked POST with trailers = %d %s", status, code)
	}
	up, got := r.last(t)
	if !bytes.Equal(got, body) {
		t.Errorf("upstream body = %q, want %q", got, body)
	}
	if len(up.Trailer) != 0 || up.Header.Get("Trailer") != "" || up.Header.Get("X-Evil") != "" {
		t.Errorf("upstream trailers = %v, Trailer header %q", up.Trailer, up.Header.Get("Trailer"))
	}
	if len(up.TransferEncoding) != 0 || up.ContentLength != int64(len(body)) {
		t.Errorf("upstream framing = %v, length %d; want a Content-Length of %d", up.TransferEncoding, up.ContentLength, len(body))
	}
}

// TestAdapterDenials: what an upstream could read differently from the
// verified request is denied before step 1, with a stable code and the §6
// body, and never reaches the upstream.
func TestAdapterDenials(t *testing.T) {
	r := newRig(t, nil)
	tests := []struct {
		name, method, extra string
		covered             []string
	}{
		{"lower-case method", "get", "", nil},
		{"mixed-case method", "Get", "", nil},
		{"two Content-Type", "GET", "Content-Type: text/plain\r\nContent-Type: application/json\r\n", nil},
		{"empty then gzip Content-Encoding", "GET", "Content-Encoding: \r\nContent-Encoding: gzip\r\n", nil},
		{"Content-Type twice by spelling", "GET", "Content-Type: text/plain\r\nContent_Type: application/json\r\n", nil},
		{"two X-Original-Host", "GET", "X-Original-Host: a.example\r\nX-Original-Host: b.example\r\n", nil},
		{"two X-Forwarded-Host", "GET", "X-Forwarded-Host: a.example\r\nx-forwarded-host: b.example\r\n", nil},
		{"two method overrides", "GET", "X-HTTP-Method-Override: GET\r\nX-HTTP-Method-Override: DELETE\r\n", nil},
		{"covered Content-Type sent twice", "GET", "Content-Type: application/evil\r\n", []string{"Content-Type", "text/plain"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := r.sign(t, "GET", r.srv.URL, "/v1/orders/1", "orders.get", nil, tt.covered...)
			n := r.upstreamCount()
			status, code, text := rawExchange(t, req.URL.Host, head(req, tt.method, "/v1/orders/1", tt.extra), "")
			if status != 401 || code != "request_binding_mismatch" || !strings.HasPrefix(text, `{"allowed":false,"reason":"request_binding_mismatch","request_id":"`) {
				t.Errorf("%s = %d %s %s, want 401 request_binding_mismatch", tt.name, status, code, text)
			}
			if r.upstreamCount() != n {
				t.Errorf("%s reached the upstream", tt.name)
			}
		})
	}
	// Two Host lines and two different Content-Lengths never reach the
	// handler: Go's server answers 400 itself.
	for name, extra := range map[string]string{
		"two Host":           "Host: victim.example\r\n",
		"two Content-Length": "Content-Length: 0\r\nContent-Length: 1\r\n",
	} {
		req := r.sign(t, "GET", r.srv.URL, "/v1/orders/1", "orders.get", nil)
		n := r.upstreamCount()
		if status, _, _ := rawExchange(t, req.URL.Host, head(req, "GET", "/v1/orders/1", extra), ""); status != 400 || r.upstreamCount() != n {
			t.Errorf("%s = %d, want 400 from the server, upstream untouched", name, status)
		}
	}
	// The same request, sent once and in canonical form, is allowed.
	req := r.sign(t, "GET", r.srv.URL, "/v1/orders/1", "orders.get", nil)
	if status, code, _ := rawExchange(t, req.URL.Host, head(req, "GET", "/v1/orders/1", "Content-Type: text/plain\r\n"), ""); status != 200 {
		t.Errorf("canonical GET = %d %s", status, code)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.recs {
		if rec.Decision.Reason == "" || rec.RequestID == "" {
			t.Errorf("record without reason or request id: %+v", rec)
		}
	}
}

// TestForwardingHeadersAreOurs: the forwarding headers no caller can cover
// are dropped and set by the verifier, never passed on from the caller.
func TestForwardingHeadersAreOurs(t *testing.T) {
	r := newRig(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.9.9.9/32")} })
	req := r.sign(t, "GET", r.srv.URL, "/v1/orders/1", "orders.get", nil)
	spoof := "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: victim.example\r\nX-Forwarded-Proto: https\r\n" +
		"X-Forwarded-Prefix: /admin\r\nX-Forwarded-Port: 443\r\nX-Forwarded-Ssl: on\r\nX-Forwarded-Server: victim\r\n" +
		"X_Forwarded_Uri: /admin\r\nForwarded: for=6.6.6.6;host=victim.example;proto=https\r\nX-Real-IP: 6.6.6.6\r\n" +
		"X_Real_IP: 6.6.6.6\r\nTrue-Client-IP: 6.6.6.6\r\n"
	status, code, _ := rawExchange(t, req.URL.Host, head(req, "GET", "/v1/orders/1", spoof), "")
	if status != 200 {
		t.Fatalf("GET = %d %s", status, code)
	}
	up, _ := r.last(t)
	for k, v := range up.Header {
		f := foldName(k)
		switch f {
		case "x-forwarded-for":
			if len(v) != 1 || v[0] != "127.0.0.1" {
				t.Errorf("upstream X-Forwarded-For = %q, want the peer alone", v)
			}
		case "x-forwarded-host":
			if len(v) != 1 || v[0] != req.URL.Host {
				t.Errorf("upstream X-Forwarded-Host = %q, want the verified %q", v, req.URL.Host)
			}
		case "x-forwarded-proto":
			if len(v) != 1 || v[0] != "http" {
				t.Errorf("upstream X-Forwarded-Proto = %q, want the verified http", v)
			}
		default:
			if forwardingHeader(f) {
				t.Errorf("upstream got the caller's %s: %q", k, v)
			}
		}
	}
}

// TestForwardedForChainFromTrustedProxy: a trusted proxy's chain is kept,
// with the peer after it.
func TestForwardedForChainFromTrustedProxy(t *testing.T) {
	r := newRig(t, nil) // 127.0.0.1 is trusted by default
	req := r.sign(t, "GET", r.srv.URL, "/v1/orders/1", "orders.get", nil)
	req.Header.Set("X-Forwarded-For", "192.0.2.7")
	if resp, text := do(t, req); resp.StatusCode != 200 {
		t.Fatalf("GET = %d %s", resp.StatusCode, text)
	}
	up, _ := r.last(t)
	if got := up.Header.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "192.0.2.7, 127.0.0.1" {
		t.Errorf("upstream X-Forwarded-For = %q", got)
	}
}

// TestOverrideHeaders: proxy mode drops the override headers the
// transcript does not cover, forwards covered ones, and keeps them all on
// a route with keep_override_headers.
func TestOverrideHeaders(t *testing.T) {
	r := newRig(t, nil)
	uncovered := "X-HTTP-Method-Override: DELETE\r\nX-Original-URL: /admin\r\nX_Rewrite_URL: /admin\r\nX-Original-Method: DELETE\r\n"
	body := []byte(`{"a":1}`)
	cl := fmt.Sprintf("Content-Length: %d\r\n", len(body))

	req := r.sign(t, "POST", r.srv.URL, "/v1/orders", "orders.create", body)
	if status, code, _ := rawExchange(t, req.URL.Host, head(req, "POST", "/v1/orders", cl+uncovered), string(body)); status != 200 {
		t.Fatalf("POST with uncovered overrides = %d %s", status, code)
	}
	up, _ := r.last(t)
	for k := range up.Header {
		if overrideHeader(foldName(k)) {
			t.Errorf("uncovered %s reached the upstream", k)
		}
	}

	req = r.sign(t, "POST", r.srv.URL, "/v1/orders", "orders.create", body, "X-HTTP-Method-Override", "PATCH")
	if status, code, _ := rawExchange(t, req.URL.Host, head(req, "POST", "/v1/orders", cl), string(body)); status != 200 {
		t.Fatalf("POST with a covered override = %d %s", status, code)
	}
	if up, _ = r.last(t); up.Header.Get("X-Http-Method-Override") != "PATCH" {
		t.Errorf("covered override header = %q, want PATCH forwarded", up.Header.Get("X-Http-Method-Override"))
	}

	req = r.sign(t, "POST", r.srv.URL, "/v1/keep", "orders.keep", body)
	if status, code, _ := rawExchange(t, req.URL.Host, head(req, "POST", "/v1/keep", cl+uncovered), string(body)); status != 200 {
		t.Fatalf("POST on a keep_override_headers route = %d %s", status, code)
	}
	if up, _ = r.last(t); up.Header.Get("X-Original-Url") != "/admin" || up.Header.Get("X-Http-Method-Override") != "DELETE" {
		t.Errorf("keep_override_headers route dropped an override: %v", up.Header)
	}
}

// TestCheckModeBodyKnowledge: SPEC §10.2 (amended): the gateway says
// whether the original request had a body; one the verifier did not see
// is denied on a route without body_hash_from_gateway.
func TestCheckModeBodyKnowledge(t *testing.T) {
	r := newRig(t, nil)
	gw := "http://orders.gw.example"
	check := func(q *http.Request, hdrs ...string) (int, string) {
		c, _ := http.NewRequest("GET", r.srv.URL+"/_tp/check", nil)
		maps.Copy(c.Header, q.Header)
		c.Header.Set("X-Original-Method", q.Method)
		c.Header.Set("X-Original-Uri", q.URL.RequestURI())
		c.Header.Set("X-Forwarded-Host", q.URL.Host)
		c.Header.Set("X-Forwarded-Proto", "http")
		for i := 0; i+1 < len(hdrs); i += 2 {
			c.Header.Set(hdrs[i], hdrs[i+1])
		}
		resp, _ := do(t, c)
		return resp.StatusCode, resp.Header.Get("X-Trustplane-Reason")
	}
	tests := []struct {
		name, method, target, route string
		body                        []byte
		hdrs                        []string
		want                        string
	}{
		{"empty-body POST sent with a body", "POST", "/v1/orders", "orders.create", nil, []string{"X-Original-Content-Length", "5"}, "request_binding_mismatch"},
		{"empty-body POST sent chunked", "POST", "/v1/orders", "orders.create", nil, []string{"X-Original-Transfer-Encoding", "chunked"}, "request_binding_mismatch"},
		{"empty-body POST, no body", "POST", "/v1/orders", "orders.create", nil, []string{"X-Original-Content-Length", "0"}, ""},
		{"POST, gateway says nothing", "POST", "/v1/orders", "orders.create", nil, nil, "request_binding_mismatch"},
		{"bad length is a body", "POST", "/v1/orders", "orders.create", nil, []string{"X-Original-Content-Length", "0x0"}, "request_binding_mismatch"},
		{"DELETE, gateway says nothing", "DELETE", "/v1/orders/1", "orders.delete", nil, nil, "request_binding_mismatch"},
		{"DELETE, chunked body", "DELETE", "/v1/orders/2", "orders.delete", nil, []string{"X-Original-Content-Length", "0", "X-Original-Transfer-Encoding", "chunked"}, "request_binding_mismatch"},
		{"DELETE, no body", "DELETE", "/v1/orders/3", "orders.delete", nil, []string{"X-Original-Content-Length", "0"}, ""},
		{"GET, gateway says nothing", "GET", "/v1/orders/4", "orders.get", nil, nil, ""},
		{"gateway body hash route", "POST", "/v1/gw", "orders.gw", []byte(`{"a":1}`), []string{"X-Original-Content-Length", "7"}, ""},
		{"lower-case original method", "get", "/v1/orders/5", "orders.get", nil, nil, "request_binding_mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := r.sign(t, strings.ToUpper(tt.method), gw, tt.target, tt.route, tt.body)
			q.Method = tt.method
			status, code := check(q, tt.hdrs...)
			if code != tt.want || (tt.want == "" && status != 200) {
				t.Errorf("check %s = %d %q, want %q", tt.name, status, code, tt.want)
			}
		})
	}
}

// TestCheckModeForeignHeaders: check mode cannot remove what the gateway
// forwards, so it denies a caller's X-TrustPlane-* beyond the proof headers
// and an uncovered override header (unless the route keeps them).
func TestCheckModeForeignHeaders(t *testing.T) {
	r := newRig(t, nil)
	gw := "http://orders.gw.example"
	check := func(q *http.Request, hdrs ...string) string {
		c, _ := http.NewRequest("GET", r.srv.URL+"/_tp/check", nil)
		maps.Copy(c.Header, q.Header)
		c.Header.Set("X-Original-Method", q.Method)
		c.Header.Set("X-Original-Uri", q.URL.RequestURI())
		c.Header.Set("X-Forwarded-Host", q.URL.Host)
		c.Header.Set("X-Original-Content-Length", "0")
		for i := 0; i+1 < len(hdrs); i += 2 {
			c.Header[hdrs[i]] = append(c.Header[hdrs[i]], hdrs[i+1])
		}
		resp, _ := do(t, c)
		return resp.Header.Get("X-Trustplane-Reason")
	}
	tests := []struct {
		name, target, route string
		covered, hdrs       []string
		want                string
	}{
		{"caller X-TrustPlane-Subject", "/v1/orders/1", "orders.get", nil, []string{"X-Trustplane-Subject", "spoofed"}, "request_binding_mismatch"},
		{"caller X_TrustPlane_Admin", "/v1/orders/2", "orders.get", nil, []string{"X_trustplane_admin", "1"}, "request_binding_mismatch"},
		{"uncovered X-HTTP-Method-Override", "/v1/orders/3", "orders.get", nil, []string{"X-Http-Method-Override", "DELETE"}, "request_binding_mismatch"},
		{"uncovered X-Original-URL", "/v1/orders/4", "orders.get", nil, []string{"X-Original-Url", "/admin"}, "request_binding_mismatch"},
		{"covered X-HTTP-Method-Override", "/v1/orders/5", "orders.get", []string{"X-HTTP-Method-Override", "DELETE"}, nil, ""},
		{"keep_override_headers route", "/v1/keep", "orders.keep", nil, []string{"X-Http-Method-Override", "DELETE"}, ""},
		{"proof headers only", "/v1/orders/6", "orders.get", nil, nil, ""},
		{"caller X-Forwarded-Scheme", "/v1/orders/7", "orders.get", nil, []string{"X-Forwarded-Scheme", "https"}, "request_binding_mismatch"},
		{"caller X_Forwarded_Proto", "/v1/orders/8", "orders.get", nil, []string{"X_forwarded_proto", "https"}, "request_binding_mismatch"},
		{"gateway X-Forwarded-Port", "/v1/orders/9", "orders.get", nil, []string{"X-Forwarded-Port", "443"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := "GET"
			if tt.route == "orders.keep" {
				method = "POST"
			}
			q := r.sign(t, method, gw, tt.target, tt.route, nil, tt.covered...)
			if got := check(q, tt.hdrs...); got != tt.want {
				t.Errorf("check %s = %q, want %q", tt.name, got, tt.want)
			}
		})
	}
}
