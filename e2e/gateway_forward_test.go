package e2e

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestNginxCheckModeForwarding runs check mode behind the shipped nginx
// auth_request config: a body the verifier never saw is denied on a route
// that binds bodies (SPEC §10.2 amended: nginx tells the verifier with
// X-Original-Content-Length / -Transfer-Encoding), a caller's own
// X-TrustPlane-* and uncovered override headers are denied, and the
// forwarding headers the app gets are nginx's.
func TestNginxCheckModeForwarding(t *testing.T) {
	w := newWorld(t)
	up, _, gw := behindFrontDoor(t, w, startNginx)
	c := &http.Client{}

	withBody := func(r *http.Request, body []byte, chunked bool) *http.Request {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		if chunked {
			r.ContentLength = -1 // the Go client then sends Transfer-Encoding: chunked
		}
		return r
	}
	denied := []struct {
		name string
		req  *http.Request
	}{
		{"POST signed for an empty body, sent with one",
			withBody(w.signed(t, "POST", gw+"/v1/orders", "orders.create", nil), []byte(`{"x":1}`), false)},
		{"POST signed for an empty body, sent chunked",
			withBody(w.signed(t, "POST", gw+"/v1/orders", "orders.create", nil), []byte(`{"x":1}`), true)},
		{"bodiless DELETE sent with a chunked body",
			withBody(w.signed(t, "DELETE", gw+"/v1/orders/ord_1", "orders.delete", nil), []byte(`{"all":true}`), true)},
		{"caller X-TrustPlane-Admin", func() *http.Request {
			r := w.signed(t, "GET", gw+"/v1/orders/ord_2", "orders.get", nil)
			r.Header.Set("X-TrustPlane-Admin", "1")
			return r
		}()},
		{"uncovered X-HTTP-Method-Override", func() *http.Request {
			r := w.signed(t, "GET", gw+"/v1/orders/ord_3", "orders.get", nil)
			r.Header.Set("X-HTTP-Method-Override", "DELETE")
			return r
		}()},
		{"caller X-Forwarded-Scheme", func() *http.Request {
			r := w.signed(t, "GET", gw+"/v1/orders/ord_7", "orders.get", nil)
			r.Header.Set("X-Forwarded-Scheme", "https")
			return r
		}()},
		{"two Content-Type", func() *http.Request {
			r := w.signed(t, "GET", gw+"/v1/orders/ord_4", "orders.get", nil)
			r.Header["Content-Type"] = []string{"text/plain", "application/json"}
			return r
		}()},
	}
	for _, tt := range denied {
		t.Run(tt.name, func(t *testing.T) {
			before := up.count()
			a := send(t, c, tt.req)
			if a.status != 401 || a.reason() != "request_binding_mismatch" {
				t.Errorf("%s = %d %s, want 401 request_binding_mismatch", tt.name, a.status, a.body)
			}
			if up.count() != before {
				t.Errorf("%s reached the app", tt.name)
			}
		})
	}

	// Bodiless requests of every method still pass: nginx always says
	// X-Original-Content-Length, "0" when the caller sent none.
	for _, tt := range []struct{ method, target, route string }{
		{"DELETE", "/v1/orders/ord_5", "orders.delete"},
		{"POST", "/v1/orders", "orders.create"},
	} {
		if a := send(t, c, w.signed(t, tt.method, gw+tt.target, tt.route, nil)); a.status != 200 {
			t.Errorf("bodiless %s %s through nginx = %d %s, want 200", tt.method, tt.target, a.status, a.body)
		}
	}

	// The app gets nginx's forwarding headers, never the caller's.
	r := w.signed(t, "GET", gw+"/v1/orders/ord_6", "orders.get", nil)
	for k, v := range map[string]string{
		"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Prefix": "/admin", "X-Forwarded-Port": "443",
		"Forwarded": "for=6.6.6.6;proto=https", "X-Real-IP": "6.6.6.6", "X-Original-Method": "DELETE",
		"X-Forwarded-Method": "DELETE", "X-Forwarded-Uri": "/admin",
	} {
		r.Header.Set(k, v)
	}
	if a := send(t, c, r); a.status != 200 {
		t.Fatalf("GET with caller forwarding headers = %d %s", a.status, a.body)
	}
	got := up.last(t)
	gwHost := strings.TrimPrefix(gw, "http://")
	for k, want := range map[string]string{
		"X-Forwarded-For": "127.0.0.1", "X-Real-Ip": "127.0.0.1", "X-Forwarded-Host": gwHost, "X-Forwarded-Proto": "http",
		"X-Forwarded-Prefix": "", "X-Forwarded-Port": "", "Forwarded": "", "X-Original-Method": "",
		"X-Forwarded-Method": "", "X-Forwarded-Uri": "",
	} {
		if v := got.Header.Values(k); len(v) > 1 || strings.Join(v, "") != want {
			t.Errorf("app %s = %q, want %q", k, v, want)
		}
	}
}

// TestNginxProxyModeForwarding runs proxy mode behind the shipped
// proxy-mode nginx config (the one deploy/local includes): the caller's
// X-Forwarded-Host/-Proto no longer make a request signed for
// https://victim.example verify on the plain-HTTP listener, and a query
// holding ';' reaches the app byte for byte.
func TestNginxProxyModeForwarding(t *testing.T) {
	w := newWorld(t)
	up := newUpstream(t)
	n := startVerifierd(t, w, true, "--upstream", up.URL)
	gw := startShippedNginx(t, "tpcluster-proxy-mode.conf", map[string]string{
		"server 127.0.0.1:8081;": "server " + strings.TrimPrefix(n.URL, "http://") + ";",
	}, "listen 127.0.0.1:8082;")
	c := &http.Client{}

	victim := w.signed(t, "GET", "https://victim.example/v1/orders/ord_1", "orders.get", nil)
	u, _ := url.Parse(gw + "/v1/orders/ord_1")
	victim.URL, victim.Host = u, ""
	victim.Header.Set("X-Forwarded-Host", "victim.example")
	victim.Header.Set("X-Forwarded-Proto", "https")
	before := up.count()
	if a := send(t, c, victim); a.status != 401 || a.reason() != "request_binding_mismatch" {
		t.Errorf("request signed for https://victim.example at %s = %d %s, want 401 request_binding_mismatch", gw, a.status, a.body)
	}
	if up.count() != before {
		t.Error("the victim's request reached the app")
	}

	target := "/v1/orders/ord_2?a=1;admin=1&b=%3B"
	ok := w.signed(t, "GET", gw+target, "orders.get", nil)
	ok.Header.Set("X-Forwarded-Prefix", "/admin")
	if a := send(t, c, ok); a.status != 200 {
		t.Fatalf("GET %s through nginx = %d %s", target, a.status, a.body)
	}
	got := up.last(t)
	if got.RequestURI != target {
		t.Errorf("app target = %q, want %q byte for byte", got.RequestURI, target)
	}
	gwHost := strings.TrimPrefix(gw, "http://")
	if h := got.Header; h.Get("X-Forwarded-Host") != gwHost || h.Get("X-Forwarded-Proto") != "http" || h.Get("X-Forwarded-Prefix") != "" ||
		h.Get("X-Forwarded-For") != "127.0.0.1, 127.0.0.1" {
		t.Errorf("app forwarding headers = Host %q Proto %q Prefix %q For %q", h.Get("X-Forwarded-Host"), h.Get("X-Forwarded-Proto"),
			h.Get("X-Forwarded-Prefix"), h.Get("X-Forwarded-For"))
	}
}
