package e2e

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/reason"
	"github.com/tpcluster/tpcluster/internal/signer"
	"github.com/tpcluster/tpcluster/internal/testport"
)

// signedClaiming is w.signed for a bodiless request under a self-issued
// passport that claims cnf.key_binding kb.
func (w *world) signedClaiming(t testing.TB, method, rawURL, routeID, kb string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	signAs(t, w.caller, signer.PassportOptions{Subject: wSubject, Audience: wAudience, KID: wKID, KeyBinding: kb}, req, nil, nil, routeID)
	return req
}

// TestWhatIsVerifiedIsForwarded runs the real verifierd in proxy
// mode: a self-issued passport claiming hardware_local is forwarded with
// the effective class, software, and refused on a hardware_local route; a
// dot segment behind a path parameter and an ambiguous query on a
// query_strict route are refused before anything reaches the upstream; and
// the audit events carry the effective class.
func TestWhatIsVerifiedIsForwarded(t *testing.T) {
	w := newWorldWith(t, func(w *world, policy map[string]any) {
		g := policy["route_groups"].([]any)[0].(map[string]any)
		g["routes"] = append(g["routes"].([]any),
			w.route("orders.hw", "GET", "/v1/hw/{id}", map[string]any{"required_key_binding": "hardware_local"}),
			w.route("orders.search", "GET", "/v1/search", map[string]any{"query_strict": true}))
	})
	up := newUpstream(t)
	natsAddr := testport.Addrs(t, 1)[0]
	dataDir := t.TempDir()
	n := startVerifierd(t, w, true, "--upstream", up.URL, "--nats-listen", natsAddr, "--data-dir", dataDir, "--node-id", "fwd-a")
	useEmbeddedCreds(t, "nats://"+natsAddr, dataDir)
	c := &http.Client{Timeout: 30 * time.Second}

	cases := []struct {
		name   string
		req    *http.Request
		status int
		reason string
		target string // the request target the upstream must see; "" for none
	}{
		{"self-issued hardware claim, software route",
			w.signedClaiming(t, "GET", n.URL+"/v1/orders/a", "orders.get", "hardware_local"), 200, "", "/v1/orders/a"},
		{"self-issued hardware claim, hardware route",
			w.signedClaiming(t, "GET", n.URL+"/v1/hw/1", "orders.hw", "hardware_local"), 403, "insufficient_key_binding", ""},
		{"dot segment behind a path parameter",
			w.signed(t, "GET", n.URL+"/v1/orders/..;", "orders.get", nil), 400, "request_path_noncanonical", ""},
		{"strict query with a duplicate key",
			w.signed(t, "GET", n.URL+"/v1/search?a=1&a=2", "orders.search", nil), 400, "request_path_noncanonical", ""},
		{"strict query, plain",
			w.signed(t, "GET", n.URL+"/v1/search?a=1&b=2", "orders.search", nil), 200, "", "/v1/search?a=1&b=2"},
	}
	ids := map[string]string{} // request id -> case
	for _, tc := range cases {
		before := up.count()
		a := send(t, c, tc.req)
		if a.status != tc.status || a.reason() != tc.reason {
			t.Errorf("%s: %d %q, want %d %q (%s)", tc.name, a.status, a.reason(), tc.status, tc.reason, a.body)
		}
		switch {
		case tc.target == "" && up.count() != before:
			t.Errorf("%s: the upstream got %q", tc.name, up.last(t).RequestURI)
		case tc.target != "":
			got := up.last(t)
			if got.RequestURI != tc.target {
				t.Errorf("%s: upstream target %q, want %q", tc.name, got.RequestURI, tc.target)
			}
			if kb := got.Header.Values("X-Trustplane-Key-Binding"); len(kb) != 1 || kb[0] != "software" {
				t.Errorf("%s: upstream X-TrustPlane-Key-Binding %q, want [software]", tc.name, kb)
			}
		}
		ids[a.header.Get("X-Request-Id")] = tc.name
	}

	msgs := waitAudit(t, "nats://"+natsAddr, "fwd-a", len(cases), 2)
	found := 0
	for _, m := range msgs {
		name, ok := ids[m.ev.RequestID]
		if !ok || m.ev.NodeID != "fwd-a" {
			continue
		}
		found++
		want := "software"
		if m.ev.ReasonCode == reason.RequestPathNoncanonical {
			want = "" // denied before a passport was read
		}
		if m.ev.KeyBinding != want {
			t.Errorf("%s: audit key_binding %q, want %q", name, m.ev.KeyBinding, want)
		}
		if bytes.Contains(m.data, []byte(`"key_binding":"hardware_local"`)) {
			t.Errorf("%s: audit event carries the claimed class: %s", name, m.data)
		}
	}
	if found != len(cases) {
		t.Errorf("found %d audit events of the %d requests", found, len(cases))
	}
}
