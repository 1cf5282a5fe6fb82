package e2e

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestProxy drives verifierd's proxy mode with its embedded NATS: signed
// GET and POST reach the upstream with the exact bytes and the context
// headers, spoofed context headers never do, replays and tampering are
// denied with the right code, and /_tp/metrics counts it all.
func TestProxy(t *testing.T) {
	w := newWorld(t)
	up := newUpstream(t)
	n := startVerifierd(t, w, true, "--upstream", up.URL)
	c := &http.Client{}

	t.Run("GET", func(t *testing.T) {
		req := w.signed(t, "GET", n.URL+"/v1/orders/ord_1?z=1&a=b%20c&a=2", "orders.get", nil,
			"Accept", "application/json")
		req.Header.Set("X-TrustPlane-Subject", "spiffe://e2e.local/workload/admin") // spoofed, uncovered
		a := send(t, c, req)
		if a.status != 200 {
			t.Fatalf("GET = %d %s", a.status, a.body)
		}
		got := up.last(t)
		if got.RequestURI != "/v1/orders/ord_1?z=1&a=b%20c&a=2" {
			t.Errorf("upstream target = %q, want the exact target sent", got.RequestURI)
		}
		checkContext(t, got.Header, "orders.get")
		if a.header.Get("X-Request-Id") == "" {
			t.Error("no X-Request-Id on the answer")
		}
	})

	t.Run("POST", func(t *testing.T) {
		body := []byte("{\"order_id\":\"ord_2\",\n \"amount\": \"42.00\"}\x00\xff")
		req := w.signed(t, "POST", n.URL+"/v1/orders", "orders.create", body, "Content-Type", "application/json")
		req.Header.Set("X-Trustplane-Issuer", "https://evil.example")
		a := send(t, c, req)
		if a.status != 200 {
			t.Fatalf("POST = %d %s", a.status, a.body)
		}
		got := up.last(t)
		if !bytes.Equal(got.Body, body) {
			t.Errorf("upstream body = %q, want %q", got.Body, body)
		}
		checkContext(t, got.Header, "orders.create")
		for _, h := range []string{"Authorization", "X-Trustplane-Proof", "X-Trustplane-Nonce",
			"X-Trustplane-Body-Sha256", "X-Trustplane-Transcript-Sha256"} {
			if v := got.Header.Values(h); len(v) != 0 {
				t.Errorf("upstream got %s = %q; proof headers are not forwarded", h, v)
			}
		}

		// The same request again: 409 jti_replay, and nothing reaches the
		// upstream.
		before := up.count()
		a = send(t, c, clone(t, req, body))
		if a.status != 409 || a.reason() != "jti_replay" {
			t.Errorf("replay = %d %s, want 409 jti_replay", a.status, a.body)
		}
		if up.count() != before {
			t.Error("a replay reached the upstream")
		}
	})

	t.Run("deny body", func(t *testing.T) {
		req, _ := http.NewRequest("GET", n.URL+"/v1/orders/ord_3", nil)
		req.Header.Set("X-Request-Id", "req-123")
		a := send(t, c, req)
		if a.status != 401 {
			t.Fatalf("no passport = %d, want 401", a.status)
		}
		want := `{"allowed":false,"reason":"passport_missing","request_id":"req-123"}`
		if string(a.body) != want {
			t.Errorf("deny body = %s, want %s", a.body, want)
		}
		if ct := a.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
	})

	tamper := []struct {
		name   string
		mutate func(r *http.Request) *http.Request
	}{
		{"path", func(r *http.Request) *http.Request {
			r2 := r.Clone(r.Context())
			r2.URL.Path, r2.URL.RawPath = "/v1/orders/ord_9", ""
			return r2
		}},
		{"query", func(r *http.Request) *http.Request {
			r2 := r.Clone(r.Context())
			r2.URL.RawQuery = "x=2"
			return r2
		}},
	}
	for _, tt := range tamper {
		t.Run("tampered "+tt.name, func(t *testing.T) {
			req := w.signed(t, "GET", n.URL+"/v1/orders/ord_4?x=1", "orders.get", nil)
			before := up.count()
			a := send(t, c, tt.mutate(req))
			if a.status != 401 || a.reason() != "request_binding_mismatch" {
				t.Errorf("tampered %s = %d %s, want 401 request_binding_mismatch", tt.name, a.status, a.body)
			}
			if up.count() != before {
				t.Error("a tampered request reached the upstream")
			}
			// The untampered request still passes: the denial burnt nothing.
			if a := send(t, c, req); a.status != 200 {
				t.Errorf("untampered after tamper = %d %s", a.status, a.body)
			}
		})
	}

	t.Run("tampered body", func(t *testing.T) {
		body := []byte(`{"order_id":"ord_5"}`)
		req := w.signed(t, "POST", n.URL+"/v1/orders", "orders.create", body)
		a := send(t, c, clone(t, req, []byte(`{"order_id":"ord_6"}`)))
		if a.status != 401 || a.reason() != "request_binding_mismatch" {
			t.Errorf("tampered body = %d %s, want 401 request_binding_mismatch", a.status, a.body)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		resp, err := http.Get(n.URL + "/_tp/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		text := string(b)
		for _, want := range []string{`reason_code="allowed"`, `reason_code="jti_replay"`,
			`reason_code="request_binding_mismatch"`, `reason_code="passport_missing"`, "tpcluster_decisions",
			// The decision's own time: a histogram per reason.
			"tpcluster_decision_duration_seconds_bucket", "tpcluster_decision_duration_seconds_count"} {
			if !strings.Contains(text, want) {
				t.Errorf("/_tp/metrics lacks %s", want)
			}
		}
	})
}

// checkContext checks that the upstream got exactly one value of each
// context header, from the decision, never the caller's.
func checkContext(t *testing.T, h http.Header, routeID string) {
	t.Helper()
	want := map[string]string{
		"X-Trustplane-Subject":      wSubject,
		"X-Trustplane-Issuer":       wIssuer,
		"X-Trustplane-Trust-Domain": wDomain,
		"X-Trustplane-Route-Id":     routeID,
		"X-Trustplane-Key-Binding":  "software",
	}
	for k, v := range want {
		if got := h.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("upstream %s = %q, want exactly [%q]", k, got, v)
		}
	}
	if got := h.Values("X-Trustplane-Jti"); len(got) != 1 || got[0] == "" {
		t.Errorf("upstream X-TrustPlane-JTI = %q, want one value", got)
	}
}
