package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// TestBundleFreshness: with bundlepub stopped, a realtime route denies
// stale_bundle_fail_closed once the realtime window passes, a bounded route
// keeps allowing until its max_staleness_seconds, an offline-ok route keeps
// allowing; restarting bundlepub with the same files puts nothing and its
// beacons make every route fresh again (SPEC §8.3).
func TestBundleFreshness(t *testing.T) {
	const (
		realtimeWindow = 3 * time.Second
		boundedMax     = 8 // seconds
		beaconEvery    = 500 * time.Millisecond
	)
	c := newFleet(t, fleetOpts{external: true, edit: func(w *world, policy map[string]any) {
		groups := policy["route_groups"].([]any)
		g := groups[0].(map[string]any)
		g["routes"] = append(g["routes"].([]any),
			w.route("fresh.realtime", "GET", "/v1/rt/{id}", map[string]any{"freshness_class": "realtime"}),
			w.route("fresh.bounded", "GET", "/v1/bounded/{id}", map[string]any{"freshness_class": "bounded", "max_staleness_seconds": boundedMax}),
		)
	}})
	pub := c.startPublisher(t, beaconEvery)
	n := c.start(t, nodeOpts{id: "node-fresh", flags: []string{"--realtime-window", realtimeWindow.String()}})
	hc := &http.Client{Timeout: 30 * time.Second}
	seq := 0
	try := func(path, route string) string {
		seq++
		return outcome(t, hc, c.signed(t, "GET", fmt.Sprintf("%s%s/%d", n.URL, path, seq), route, nil))
	}
	routes := []struct{ path, id string }{{"/v1/rt", "fresh.realtime"}, {"/v1/bounded", "fresh.bounded"}, {"/v1/orders", "orders.get"}}
	allFresh := func() error {
		for _, r := range routes {
			if got := try(r.path, r.id); got != "200" {
				return fmt.Errorf("%s = %s", r.id, got)
			}
		}
		return nil
	}
	testwait.Until(t, 30*time.Second, "every route allowed while beacons flow", allFresh)

	pub.stop()
	stopped := time.Now()
	var realtimeStale, boundedStale time.Duration
	testwait.Until(t, 60*time.Second, "bounded route stale", func() error {
		rt, bd, off := try("/v1/rt", "fresh.realtime"), try("/v1/bounded", "fresh.bounded"), try("/v1/orders", "orders.get")
		since := time.Since(stopped)
		if off != "200" {
			t.Fatalf("offline-ok route %s after beacons stopped = %s, want 200", since, off)
		}
		if realtimeStale == 0 && rt != "200" {
			if rt != "503 stale_bundle_fail_closed" {
				t.Fatalf("realtime route = %s, want 503 stale_bundle_fail_closed", rt)
			}
			realtimeStale = since
		}
		if bd == "200" {
			if realtimeStale != 0 && since > boundedMax*time.Second+2*time.Second {
				t.Fatalf("bounded route still allowed %s after beacons stopped (max_staleness_seconds %d)", since, boundedMax)
			}
			return errors.New("bounded still fresh")
		}
		if bd != "503 stale_bundle_fail_closed" {
			t.Fatalf("bounded route = %s, want 503 stale_bundle_fail_closed", bd)
		}
		boundedStale = since
		return nil
	})
	if realtimeStale == 0 || realtimeStale < realtimeWindow-beaconEvery || boundedStale < boundedMax*time.Second-beaconEvery || boundedStale <= realtimeStale {
		t.Errorf("stale after: realtime %s (window %s), bounded %s (max %ds)", realtimeStale, realtimeWindow, boundedStale, boundedMax)
	}
	t.Logf("beacons stopped: realtime route denied stale_bundle_fail_closed after %s (window %s), bounded after %s (max %ds), offline-ok allowed throughout",
		realtimeStale.Round(time.Millisecond), realtimeWindow, boundedStale.Round(time.Millisecond), boundedMax)

	kv := natstest.JetStream(t, natstest.Connect(t, c.url))
	bucket, err := kv.KeyValue(t.Context(), "TRUSTPLANE_BUNDLES")
	if err != nil {
		t.Fatal(err)
	}
	revBefore := revisions(t, bucket)
	restarted := time.Now()
	pub = c.startPublisher(t, beaconEvery)
	if out := pub.logs.String(); strings.Count(out, "unchanged: these bytes are already published") != 2 {
		t.Errorf("restarted bundlepub output:\n%s\nwant both documents unchanged", out)
	}
	took := testwait.Until(t, 30*time.Second, "every route allowed after beacons resume", allFresh)
	if after := revisions(t, bucket); after != revBefore {
		t.Errorf("document revisions %v after restarting bundlepub with the same files, want %v (no put)", after, revBefore)
	}
	t.Logf("bundlepub restarted with the same files: no put; every route fresh %s after its start (%s after the restart call)",
		took.Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
}

// revisions returns the revisions of the two documents in the bucket.
func revisions(t testing.TB, kv interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
}) [2]uint64 {
	t.Helper()
	var out [2]uint64
	for i, key := range []string{"trust-material", "policy-bundle"} {
		e, err := kv.Get(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = e.Revision()
	}
	return out
}

// TestBundleNodeStartsWhileNATSDown: a node restarted while NATS is down
// decides from its verified disk cache (replay_ledger_unavailable, not
// bundle_policy_missing) and allows as soon as NATS answers (SPEC §8.2).
func TestBundleNodeStartsWhileNATSDown(t *testing.T) {
	c := newFleet(t, fleetOpts{external: true})
	mustBundlepub(t, c.publishArgs()...)
	o := nodeOpts{id: "node-cache", dataDir: t.TempDir()}
	first := c.start(t, o)
	hc := &http.Client{Timeout: 30 * time.Second}
	if got := outcome(t, hc, c.signed(t, "GET", first.URL+"/v1/orders/a", "orders.get", nil)); got != "200" {
		t.Fatalf("before the outage = %s", got)
	}
	first.stop()

	c.ext.Stop()
	o.unready = true
	n := c.start(t, o)
	for i := range 3 {
		got := outcome(t, hc, c.signed(t, "GET", fmt.Sprintf("%s/v1/orders/down-%d", n.URL, i), "orders.get", nil))
		if got != "503 replay_ledger_unavailable" {
			t.Fatalf("node started while NATS is down = %s, want 503 replay_ledger_unavailable (decided from the cached pair)", got)
		}
	}
	a := send(t, hc, mustGet(t, n.URL+"/_tp/readyz"))
	if a.status != 503 || !strings.Contains(string(a.body), `"sequence":1`) {
		t.Errorf("readyz while NATS is down = %d %s, want 503 listing the cached pair", a.status, a.body)
	}
	t.Logf("NATS down: readyz %d %s", a.status, a.body)

	c.ext.Start()
	i := 0
	took := testwait.Until(t, 60*time.Second, "allowed once NATS answers", func() error {
		i++
		if got := outcome(t, hc, c.signed(t, "GET", fmt.Sprintf("%s/v1/orders/up-%d", n.URL, i), "orders.get", nil)); got != "200" {
			return errors.New(got)
		}
		return nil
	})
	t.Logf("node started from its cache while NATS was down: first allow %s after NATS came back (%d attempts)", took.Round(time.Millisecond), i)
}
