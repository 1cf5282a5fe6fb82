package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// TestTwoRegions: two regions of three NATS servers each, joined by
// gateways through a latency proxy adding 40 ms one way, one verifierd per
// region (--region eu, --region us). A region-bound audience replayed in the
// other region is denied audience_region_mismatch; a home-region audience
// replayed across regions is denied jti_replay; the latency of each mode is
// logged (docs/PERFORMANCE.md reports it).
func TestTwoRegions(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: a six-server supercluster and two nodes; CI runs it")
	}
	const wan = 40 * time.Millisecond
	regions := natstest.SuperCluster(t, wan, 3, "eu", "us")
	// Bundles are published once, in eu, over the bundle channel.
	ch := newChannel(t, strings.Join(regions[0].URLs(), ","), func(w *world, p map[string]any) {
		p["apis"] = append(p["apis"].([]any),
			map[string]any{"api_id": "billing", "audience": "billing-api", "base_url": "http://billing.e2e"})
		p["route_groups"] = append(p["route_groups"].([]any), map[string]any{
			"route_group_id": "billing", "api_id": "billing", "routes": []any{
				w.route("billing.get", "GET", "/v1/billing/{id}", nil),
			}})
		p["audience_regions"] = map[string]any{
			wAudience:     map[string]any{"home_region": "eu", "mode": "region_bound"},
			"billing-api": map[string]any{"home_region": "eu", "mode": "home_region"},
		}
	}, "node-eu", "node-us")
	w := ch.world
	published := time.Now()
	mustBundlepub(t, ch.publishArgs("--replicas", "3")...)
	nodes := map[string]*node{}
	for _, r := range regions {
		nodes[r.Name] = ch.start(t, nodeOpts{id: "node-" + r.Name,
			flags: []string{"--region", r.Name, "--nats-url", strings.Join(r.URLs(), ","), "--ledger-replicas", "3"}})
	}
	// Both nodes are ready, so each holds the pair published once in eu.
	t.Logf("bundle published in eu reached both regions' nodes within %s", time.Since(published).Round(time.Millisecond))
	if st := ch.status(t); len(st) != 2 {
		t.Errorf("bundlepub status sees %d nodes, want 2: %+v", len(st), st)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	// to sends a copy of req to a region's node with the authority the
	// caller signed (a global load balancer would present it).
	to := func(req *http.Request, region string) answer {
		cp := clone(t, req, nil)
		cp.URL.Host = strings.TrimPrefix(nodes[region].URL, "http://")
		cp.Host = "api.e2e"
		return send(t, c, cp)
	}

	t.Run("region bound", func(t *testing.T) {
		req := w.signedFor(t, wAudience, "GET", "http://api.e2e/v1/orders/1", "orders.get", nil)
		if a := to(req, "eu"); a.status != 200 {
			t.Fatalf("eu node, eu-bound audience = %d %s", a.status, a.body)
		}
		if a := to(req, "us"); a.status != 403 || a.reason() != "audience_region_mismatch" {
			t.Errorf("replay in us = %d %s, want 403 audience_region_mismatch", a.status, a.body)
		}
		fresh := w.signedFor(t, wAudience, "GET", "http://api.e2e/v1/orders/2", "orders.get", nil)
		if a := to(fresh, "us"); a.status != 403 || a.reason() != "audience_region_mismatch" {
			t.Errorf("fresh request in us = %d %s, want 403 audience_region_mismatch", a.status, a.body)
		}
	})

	t.Run("home region", func(t *testing.T) {
		req := w.signedFor(t, "billing-api", "GET", "http://api.e2e/v1/billing/1", "billing.get", nil)
		if a := to(req, "us"); a.status != 200 {
			t.Fatalf("us node, eu-homed audience = %d %s", a.status, a.body)
		}
		if a := to(req, "eu"); a.status != 409 || a.reason() != "jti_replay" {
			t.Errorf("replay at home in eu = %d %s, want 409 jti_replay", a.status, a.body)
		}
		if a := to(req, "us"); a.status != 409 || a.reason() != "jti_replay" {
			t.Errorf("replay again in us = %d %s, want 409 jti_replay", a.status, a.body)
		}
		req2 := w.signedFor(t, "billing-api", "GET", "http://api.e2e/v1/billing/2", "billing.get", nil)
		if a := to(req2, "eu"); a.status != 200 {
			t.Fatalf("eu node, eu-homed audience = %d %s", a.status, a.body)
		}
		if a := to(req2, "us"); a.status != 409 || a.reason() != "jti_replay" {
			t.Errorf("replay in us of a request consumed in eu = %d %s, want 409 jti_replay", a.status, a.body)
		}
	})

	t.Run("audit gathered", func(t *testing.T) {
		url := regions[0].URLs()[0]
		if code, out, errs := runBinary(t, "tpaudit", "gather", "--nats-url", url, "--regions", "eu,us", "--replicas", "3", "--cluster", "eu"); code != 0 {
			t.Fatalf("tpaudit gather: exit %d\n%s%s", code, out, errs)
		}
		// Every event of both regional streams reaches the global one, once,
		// under its SPEC subject and naming its region.
		var msgs []auditMsg
		took := testwait.Until(t, 60*time.Second, "global audit stream caught up", func() error {
			eu, us := streamMsgs(t, url, "TRUSTPLANE_AUDIT_EU"), streamMsgs(t, url, "TRUSTPLANE_AUDIT_US")
			msgs = readAudit(t, url) // events; the counts include checkpoints
			if global := streamMsgs(t, url, "TRUSTPLANE_AUDIT"); eu == 0 || us == 0 || global != eu+us {
				return fmt.Errorf("regional streams eu %d + us %d, global %d", eu, us, global)
			}
			return nil
		})
		ids := map[string]bool{}
		perRegion := map[string]int{}
		for _, m := range msgs {
			wantRegion := strings.TrimPrefix(m.ev.NodeID, "node-")
			if m.ev.Region != wantRegion || !strings.HasPrefix(m.subject, "trustplane.audit."+m.ev.Outcome+".") || ids[m.msgID] {
				t.Errorf("global event %d: node %s region %q subject %s msg id %s (seen %v)", m.seq, m.ev.NodeID, m.ev.Region, m.subject, m.msgID, ids[m.msgID])
			}
			ids[m.msgID] = true
			perRegion[m.ev.Region]++
		}
		t.Logf("global audit stream: %d events gathered from %v within %s of tpaudit gather", len(msgs), perRegion, took.Round(time.Millisecond))
		requireWhole(t, w, url)
	})

	t.Run("latency", func(t *testing.T) {
		measure := func(aud, route, path, region string) []time.Duration {
			var lat []time.Duration
			for i := range 20 {
				req := w.signedFor(t, aud, "GET", fmt.Sprintf("http://api.e2e%s/lat-%s-%d", path, region, i), route, nil)
				start := time.Now()
				if a := to(req, region); a.status != 200 {
					t.Fatalf("%s in %s = %d %s", aud, region, a.status, a.body)
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			return lat
		}
		bound := measure(wAudience, "orders.get", "/v1/orders", "eu")
		homeLocal := measure("billing-api", "billing.get", "/v1/billing", "eu")
		homeRemote := measure("billing-api", "billing.get", "/v1/billing", "us")
		p := func(l []time.Duration) string {
			return fmt.Sprintf("p50 %s p90 %s", l[len(l)/2].Round(100*time.Microsecond), l[len(l)*9/10].Round(100*time.Microsecond))
		}
		t.Logf("two regions, WAN %s one way; request latency through verifierd: region-bound in its home %s; home-region audience at home %s; home-region audience from the other region %s",
			wan, p(bound), p(homeLocal), p(homeRemote))
		if homeRemote[0] < 2*wan {
			t.Errorf("a home-region decision from the other region took %s, under one WAN round trip", homeRemote[0])
		}
	})
}

// streamMsgs is the number of messages stream holds.
func streamMsgs(t testing.TB, url, stream string) uint64 {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return 0
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}
