package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestReshardMixedFleet is the reshard procedure of docs/LEDGER-SHARDS.md
// with the real binaries on a three-server cluster (R3): a node on the old
// layout (one bucket), a node in transition (--ledger-shards 3
// --ledger-shards-previous 1) and a node on the new layout
// (--ledger-shards 3). For each pair the procedure runs side by side, a
// request allowed by one node is 409 jti_replay on the other, in both
// directions, and reaches the upstream once.
func TestReshardMixedFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: a three-server cluster and three verifierd nodes")
	}
	f := newFleet(t, fleetOpts{servers: 3})
	w, up := f.world, f.up
	r3 := []string{"--ledger-replicas", "3"}
	old := f.start(t, nodeOpts{id: "old", files: true, flags: r3})
	trans := f.start(t, nodeOpts{id: "transition", files: true, flags: append([]string{"--ledger-shards", "3", "--ledger-shards-previous", "1"}, r3...)})
	nu := f.start(t, nodeOpts{id: "new", files: true, flags: append([]string{"--ledger-shards", "3"}, r3...)})
	c := &http.Client{}
	at := func(req *http.Request, n *node) *http.Request {
		cl := clone(t, req, nil)
		cl.URL.Host = strings.TrimPrefix(n.URL, "http://")
		cl.Host = "orders.e2e"
		return cl
	}
	for _, p := range []struct {
		name          string
		first, second *node
	}{
		{"old then transition", old, trans},
		{"transition then old", trans, old},
		{"transition then new", trans, nu},
		{"new then transition", nu, trans},
	} {
		t.Run(p.name, func(t *testing.T) {
			for i := range 10 {
				before := up.count()
				req := w.signed(t, "GET", fmt.Sprintf("http://orders.e2e/v1/orders/%s-%d", strings.ReplaceAll(p.name, " ", "-"), i), "orders.get", nil)
				if a := send(t, c, at(req, p.first)); a.status != 200 {
					t.Fatalf("first node = %d %s, want 200", a.status, a.body)
				}
				if a := send(t, c, at(req, p.second)); a.status != 409 || a.reason() != "jti_replay" {
					t.Fatalf("second node = %d %s, want 409 jti_replay", a.status, a.body)
				}
				if got := up.count() - before; got != 1 {
					t.Fatalf("upstream got %d requests, want 1", got)
				}
			}
		})
	}
}
