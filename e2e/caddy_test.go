package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/backendjwt"
	"github.com/tpcluster/tpcluster/internal/conformance"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/testport"
)

// startCaddy runs caddy with the shipped deploy/caddy/Caddyfile, unchanged:
// only its environment placeholders are set, to this test's ports. Its
// data and config dirs are the test's; the admin endpoint is off. It
// returns the listener's base URL.
func startCaddy(t *testing.T, verifier, app string) string {
	t.Helper()
	conf := filepath.Join(conformance.ModuleRoot(t), "deploy", "caddy", "Caddyfile")
	listen := testport.Addrs(t, 1)[0]
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env := []string{
		"TPCLUSTER_CADDY_BIND=" + host, "TPCLUSTER_CADDY_PORT=" + port,
		"TPCLUSTER_CADDY_VERIFIER=" + verifier, "TPCLUSTER_CADDY_APP=" + app,
		"TPCLUSTER_CADDY_ADMIN=off",
		"XDG_DATA_HOME=" + filepath.Join(dir, "data"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
		"HOME=" + dir,
	}
	start := time.Now()
	// SIGTERM: caddy's graceful stop.
	p := startProc(t, "caddy", frontDoorBinary(t, "caddy", "/usr/bin/caddy", "caddy"), []string{"run", "--config", conf, "--adapter", "caddyfile"}, env, syscall.SIGTERM)
	base := "http://" + listen
	p.waitHTTP(t, 20*time.Second, base+"/_tp/none", true)
	t.Logf("caddy serving after %s", time.Since(start).Round(time.Millisecond))
	return base
}

// withAssertionKey gives w's trust material an active assertion key and
// returns the private key file (0600) for verifierd's --assertion-key.
func withAssertionKey(t *testing.T, w *world) string {
	t.Helper()
	k, err := keyfile.Generate("caddy-assertion-1")
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(w.dir, "assertion")
	if err := k.Write(base); err != nil {
		t.Fatal(err)
	}
	edited := filepath.Join(w.dir, "trust.edited.json")
	writeAssertionKeys(t, w.trust, edited, []listedKey{{k, "active"}})
	mustBundlepub(t, "sign", "--key", filepath.Join(w.dir, "bundle.key"), "--in", edited, "--out", w.trust)
	return base + ".key"
}

// chunked makes req send its body with Transfer-Encoding: chunked.
func chunked(req *http.Request, body []byte) *http.Request {
	req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), -1
	return req
}

const (
	caddyIssuer   = "https://tpcluster.e2e.example"
	caddyAudience = "orders-backend"
)

// TestCaddyForwardAuth puts a real caddy with the shipped Caddyfile in front
// of verifierd check mode (issue 15 item 6): allowed requests reach the app
// with the decision's context headers (and the backend assertion where the
// route asks), never the caller's proof, identity or forwarding headers;
// denials reach the caller with the SPEC §6 status and body; bodies are
// handled as SPEC §10.2 says; headers a caller forges for the check
// change nothing.
func TestCaddyForwardAuth(t *testing.T) {
	w := newWorldWith(t, func(w *world, policy map[string]any) {
		g := policy["route_groups"].([]any)[0].(map[string]any)
		g["routes"] = append(g["routes"].([]any), w.route("orders.asserted", "GET", "/v1/asserted/{id}",
			map[string]any{"backend_assertion": map[string]any{"audience": caddyAudience, "ttl_seconds": 30}}))
	})
	key := withAssertionKey(t, w)
	up, n, gw := behindFrontDoor(t, w, startCaddy, "--assertion-key", key, "--assertion-issuer", caddyIssuer)
	gwHost := strings.TrimPrefix(gw, "http://")
	c := &http.Client{}

	// Proof, identity and forwarding headers no app may read from a caller.
	callerOnly := []string{"Authorization", "X-Trustplane-Nonce", "X-Trustplane-Proof", "X-Trustplane-Body-Sha256",
		"X-Trustplane-Transcript-Sha256", "X-Trustplane-Assertion", "X_trustplane_subject", "X-Forwarded-Prefix",
		"Forwarded", "True-Client-Ip", "X-Original-Method", "X-Original-Uri", "X-Original-Content-Length",
		"X-Original-Transfer-Encoding"}
	noneOf := func(t *testing.T, h http.Header, names []string) {
		t.Helper()
		for _, k := range names {
			if v, ok := h[k]; ok {
				t.Errorf("upstream got %s: %q", k, v)
			}
		}
	}
	one := func(t *testing.T, h http.Header, k, want string) {
		t.Helper()
		if got := h.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("upstream %s = %q, want exactly [%q]", k, got, want)
		}
	}

	t.Run("allowed GET", func(t *testing.T) {
		get := w.signed(t, "GET", gw+"/v1/orders/ord_1?b=2&a=1", "orders.get", nil)
		for k, v := range map[string]string{
			"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", "X-Forwarded-Prefix": "/admin",
			"Forwarded": "for=6.6.6.6", "X-Real-Ip": "6.6.6.6", "True-Client-Ip": "6.6.6.6",
		} {
			get.Header.Set(k, v)
		}
		get.Header["X_TrustPlane_Subject"] = []string{"spiffe://e2e.local/workload/admin"}
		// No Accept-Encoding from this caller: the app must get none
		// either (Caddy's transport would add gzip).
		plain := &http.Client{Transport: &http.Transport{DisableCompression: true}}
		defer plain.CloseIdleConnections()
		a := send(t, plain, get)
		if a.status != 200 {
			t.Fatalf("GET through caddy = %d %s", a.status, a.body)
		}
		got := up.last(t)
		if got.RequestURI != "/v1/orders/ord_1?b=2&a=1" || got.Method != "GET" || got.Host != gwHost {
			t.Errorf("app got %s %q Host %q", got.Method, got.RequestURI, got.Host)
		}
		checkContext(t, got.Header, "orders.get")
		noneOf(t, got.Header, callerOnly)
		one(t, got.Header, "X-Forwarded-For", "127.0.0.1")
		one(t, got.Header, "X-Forwarded-Proto", "http")
		one(t, got.Header, "X-Forwarded-Host", gwHost)
		one(t, got.Header, "X-Real-Ip", "127.0.0.1")
		if v, ok := got.Header["Accept-Encoding"]; ok {
			t.Errorf("upstream got Accept-Encoding %q the caller never sent", v)
		}
		id := a.header.Values("X-Request-Id")
		if len(id) != 1 || id[0] == "" {
			t.Fatalf("caller's X-Request-Id = %q, want the decision's", id)
		}
		one(t, got.Header, "X-Request-Id", id[0])
	})

	t.Run("allowed with assertion", func(t *testing.T) {
		a := send(t, c, w.signed(t, "GET", gw+"/v1/asserted/a1?x=1", "orders.asserted", nil))
		if a.status != 200 {
			t.Fatalf("GET through caddy = %d %s", a.status, a.body)
		}
		got := up.last(t)
		checkContext(t, got.Header, "orders.asserted")
		tok := got.Header.Values("X-Trustplane-Assertion")
		if len(tok) != 1 {
			t.Fatalf("upstream X-TrustPlane-Assertion = %q, want one", tok)
		}
		v, err := backendjwt.New(backendjwt.Config{JWKSURL: n.URL + "/_tp/jwks.json", Issuer: caddyIssuer, Audience: caddyAudience})
		if err != nil {
			t.Fatal(err)
		}
		cl, err := v.Verify(t.Context(), tok[0])
		if err != nil {
			t.Fatalf("the assertion the app got does not verify: %v", err)
		}
		if cl.RouteID != "orders.asserted" || cl.Method != "GET" || cl.Target != got.RequestURI ||
			cl.Subject != wSubject || cl.RequestID != a.header.Get("X-Request-Id") || cl.PassportJTI != got.Header.Get("X-Trustplane-Jti") {
			t.Errorf("assertion claims = %+v; app got %s %q, request id %q", cl, got.Method, got.RequestURI, a.header.Get("X-Request-Id"))
		}
	})

	// The caller's own assertion is no credential, and a route that does
	// not ask for one sends none upstream (got no empty header either).
	t.Run("no assertion where the route asks none", func(t *testing.T) {
		if a := send(t, c, w.signed(t, "GET", gw+"/v1/orders/ord_9", "orders.get", nil)); a.status != 200 {
			t.Fatalf("GET = %d %s", a.status, a.body)
		}
		if v, ok := up.last(t).Header["X-Trustplane-Assertion"]; ok {
			t.Errorf("upstream got X-TrustPlane-Assertion %q on a route without backend_assertion", v)
		}
	})

	body := []byte(`{"order_id":"ord_7"}`)
	t.Run("gateway body route", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			req  *http.Request
		}{
			{"Content-Length", w.signed(t, "POST", gw+"/v1/gw/orders", "orders.gateway-create", body, "Content-Type", "application/json")},
			{"chunked", chunked(w.signed(t, "POST", gw+"/v1/gw/orders", "orders.gateway-create", body, "Content-Type", "application/json"), body)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if a := send(t, c, tc.req); a.status != 200 {
					t.Fatalf("POST through caddy = %d %s", a.status, a.body)
				}
				got := up.last(t)
				if !bytes.Equal(got.Body, body) {
					t.Errorf("app body = %q, want %q", got.Body, body)
				}
				checkContext(t, got.Header, "orders.gateway-create")
				noneOf(t, got.Header, callerOnly)
			})
		}
	})

	// The body limit (verifierd's --max-body-bytes, 1 MiB): a chunked
	// body under it reaches the app whole; over it, with or without
	// Content-Length, Caddy refuses it before the check (a chunked body is
	// read to the limit and would otherwise reach the app cut).
	t.Run("body limit", func(t *testing.T) {
		under := bytes.Repeat([]byte("u"), 1<<20-1)
		a := send(t, c, chunked(w.signed(t, "POST", gw+"/v1/gw/orders", "orders.gateway-create", under), under))
		if a.status != 200 {
			t.Fatalf("chunked POST of 1 MiB - 1 = %d %s", a.status, a.body)
		}
		if got := up.last(t).Body; !bytes.Equal(got, under) {
			t.Errorf("app got %d bytes, want %d", len(got), len(under))
		}
		over := bytes.Repeat([]byte("o"), 1<<20+1)
		for _, tc := range []struct {
			name string
			req  *http.Request
		}{
			{"Content-Length", w.signed(t, "POST", gw+"/v1/gw/orders", "orders.gateway-create", over)},
			{"chunked", chunked(w.signed(t, "POST", gw+"/v1/gw/orders", "orders.gateway-create", over), over)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := up.count()
				if a := send(t, c, tc.req); a.status != http.StatusRequestEntityTooLarge {
					t.Errorf("POST of 1 MiB + 1 = %d %s, want 413", a.status, a.body)
				}
				if up.count() != before {
					t.Error("a body over the limit reached the app")
				}
			})
		}
	})

	// A caller that announces more body than it sends: Caddy reads the
	// whole body before the check, so the app never gets a request cut
	// short (Caddy's proxy would otherwise stream what came, then break).
	t.Run("body shorter than Content-Length", func(t *testing.T) {
		before := up.count()
		r := w.signed(t, "POST", gw+"/v1/gw/orders", "orders.gateway-create", body, "Content-Type", "application/json")
		var wire bytes.Buffer
		if err := r.Write(&wire); err != nil {
			t.Fatal(err)
		}
		cl := fmt.Sprintf("Content-Length: %d\r\n", len(body))
		if !bytes.Contains(wire.Bytes(), []byte(cl)) {
			t.Fatalf("no %q in %q", cl, wire.Bytes())
		}
		cut := bytes.Replace(wire.Bytes(), []byte(cl), fmt.Appendf(nil, "Content-Length: %d\r\n", len(body)+10), 1)
		a := rawSend(gwHost, cut, true, "POST")
		if a.status != http.StatusBadRequest {
			t.Errorf("POST with %d of %d body bytes = %d %q %v, want 400", len(body), len(body)+10, a.status, a.body, a.err)
		}
		if up.count() != before {
			t.Errorf("a request with a cut body reached the app: %q", up.last(t).Body)
		}
	})

	t.Run("bodiless", func(t *testing.T) {
		// Go sends a DELETE without a body with no Content-Length: Caddy
		// tells check mode "0", or it would take the DELETE as having one.
		del := w.signed(t, "DELETE", gw+"/v1/orders/ord_4", "orders.delete", nil)
		if a := send(t, c, del); a.status != 200 {
			t.Fatalf("DELETE through caddy = %d %s", a.status, a.body)
		}
		empty := w.signed(t, "POST", gw+"/v1/orders", "orders.create", nil)
		empty.Header.Set("Content-Length", "0")
		if a := send(t, c, empty); a.status != 200 {
			t.Fatalf("POST with an empty body through caddy = %d %s", a.status, a.body)
		}
	})

	get := w.signed(t, "GET", gw+"/v1/orders/ord_1?b=2&a=1", "orders.get", nil)
	if a := send(t, c, get); a.status != 200 {
		t.Fatalf("GET through caddy = %d %s", a.status, a.body)
	}
	checkDenials(t, c, up, []denial{
		{"replay", clone(t, get, nil), 409, "jti_replay"},
		{"path tamper", func() *http.Request {
			r := w.signed(t, "GET", gw+"/v1/orders/ord_2", "orders.get", nil)
			r.URL.Path = "/v1/orders/ord_3"
			return r
		}(), 401, "request_binding_mismatch"},
		{"no passport", func() *http.Request { r, _ := http.NewRequest("GET", gw+"/v1/orders/ord_2", nil); return r }(), 401, "passport_missing"},
		{"no route", w.signed(t, "GET", gw+"/v1/nothing/here", "orders.get", nil), 404, "bundle_route_missing"},
		// Like nginx: the caller's X-TrustPlane-* names other than the
		// proof's are denied by check mode.
		{"spoofed X-TrustPlane-Subject", func() *http.Request {
			r := w.signed(t, "GET", gw+"/v1/orders/ord_5", "orders.get", nil)
			r.Header.Set("X-TrustPlane-Subject", "spiffe://e2e.local/workload/admin")
			return r
		}(), 401, "request_binding_mismatch"},
		{"spoofed X-TrustPlane-Assertion", func() *http.Request {
			r := w.signed(t, "GET", gw+"/v1/orders/ord_6", "orders.get", nil)
			r.Header.Set("X-TrustPlane-Assertion", "eyJhbGciOiJFZERTQSJ9.e30.AA")
			return r
		}(), 401, "request_binding_mismatch"},
		// A request signed for /ord_a, sent to /ord_b, with the check's
		// headers forged to say /ord_a: Caddy sets them itself.
		{"forged X-Original-URI", func() *http.Request {
			r := w.signed(t, "GET", gw+"/v1/orders/ord_a", "orders.get", nil)
			r.URL.Path = "/v1/orders/ord_b"
			r.Header.Set("X-Original-URI", "/v1/orders/ord_a")
			r.Header.Set("X-Original-Method", "GET")
			r.Header.Set("X-Forwarded-Uri", "/v1/orders/ord_a")
			return r
		}(), 401, "request_binding_mismatch"},
		{"forged X-Original-Method", func() *http.Request {
			r := w.signed(t, "GET", gw+"/v1/orders/ord_c", "orders.get", nil)
			r.Method = "DELETE"
			r.Header.Set("X-Original-Method", "GET")
			return r
		}(), 401, "request_binding_mismatch"},
		// Signed for another authority, with X-Forwarded-Host saying it:
		// Caddy replaces the caller's X-Forwarded-Host with the Host.
		{"forged X-Forwarded-Host", func() *http.Request {
			r := w.signed(t, "GET", "http://victim.example/v1/orders/ord_d", "orders.get", nil)
			r.URL.Host = gwHost
			r.Host = gwHost
			r.Header.Set("X-Forwarded-Host", "victim.example")
			return r
		}(), 401, "request_binding_mismatch"},
		// Bodies on a route that binds them: forward_auth sends none to
		// check mode, which is told there was one (SPEC §10.2).
		{"POST body on a bound route", w.signed(t, "POST", gw+"/v1/orders", "orders.create", body, "Content-Type", "application/json"),
			401, "request_binding_mismatch"},
		{"chunked POST body on a bound route", chunked(w.signed(t, "POST", gw+"/v1/orders", "orders.create", body, "Content-Type", "application/json"), body),
			401, "request_binding_mismatch"},
		{"forged X-Original-Content-Length", func() *http.Request {
			r := w.signed(t, "POST", gw+"/v1/orders", "orders.create", body, "Content-Type", "application/json")
			r.Header.Set("X-Original-Content-Length", "0")
			return r
		}(), 401, "request_binding_mismatch"},
		// A GET signed without a body, sent with one in chunks: Go drops
		// Transfer-Encoding from the headers, so Caddy reads to tell.
		{"chunked body on a GET", chunked(w.signed(t, "GET", gw+"/v1/orders/ord_e", "orders.get", nil), []byte("smuggled")),
			401, "request_binding_mismatch"},
	}, func(t *testing.T, tt denial, a answer) {
		if got := a.header.Values("X-Trustplane-Reason"); len(got) != 1 || got[0] != tt.reason {
			t.Errorf("X-TrustPlane-Reason = %q, want [%q]", got, tt.reason)
		}
	})

	// Recorded for docs/OPERATIONS.md, never asserted (a shared machine).
	t.Run("latency", func(t *testing.T) {
		const n = 50
		took := make([]time.Duration, 0, n)
		for i := range n {
			r := w.signed(t, "GET", gw+fmt.Sprintf("/v1/orders/lat_%d", i), "orders.get", nil)
			start := time.Now()
			if a := send(t, c, r); a.status != 200 {
				t.Fatalf("GET %d = %d %s", i, a.status, a.body)
			}
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		t.Logf("%d signed GETs through caddy + check mode + app: median %s, max %s", n, took[n/2], took[n-1])
	})

	// With verifierd gone, Caddy cannot ask: the request goes no further.
	t.Run("verifierd down", func(t *testing.T) {
		n.stop()
		before := up.count()
		a := send(t, c, w.signed(t, "GET", gw+"/v1/orders/ord_down", "orders.get", nil))
		if a.status != http.StatusBadGateway {
			t.Errorf("GET with verifierd down = %d %s, want 502 from caddy", a.status, a.body)
		}
		if up.count() != before {
			t.Error("a request reached the app with verifierd down")
		}
	})
}
