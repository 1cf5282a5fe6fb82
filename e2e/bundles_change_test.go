package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/testwait"
)

// TestChangeRunningFleet is docs/BUNDLEPUB.md's "change the policy of a
// running fleet": bundlepub publish --watch keeps beacons flowing for the
// fleet, an operator publishes a new pair with one one-shot bundlepub
// publish (other files, no beacon key), and the new pair's realtime route
// is allowed and stays allowed well past the realtime window, because the
// running publisher beacons the pair it finds in the bucket. Before, it
// kept beaconing its own older pair and the new route denied
// stale_bundle_fail_closed about 6 s later.
func TestChangeRunningFleet(t *testing.T) {
	const (
		realtimeWindow = 2 * time.Second
		beaconEvery    = 500 * time.Millisecond
	)
	c := newFleet(t, fleetOpts{servers: 1})
	args := c.publishArgs("--watch", "--beacon-key", c.beaconKey, "--beacon-interval", beaconEvery.String())
	watcher := startProc(t, "bundlepub publish --watch", binary(t, "bundlepub"), args, []string{"TPCLUSTER_NATS_URL="}, syscall.SIGTERM)
	testwait.Until(t, 30*time.Second, "bundlepub publish --watch running", func() error {
		if err := watcher.running(); err != nil {
			return err
		}
		if !strings.Contains(watcher.logs.String(), "publishing: beacons every") {
			return errors.New("not yet")
		}
		return nil
	})
	n := c.start(t, nodeOpts{id: "node-change", flags: []string{"--realtime-window", realtimeWindow.String()}})
	c.allOn(t, 1, 1, 1)

	// The change, prepared offline: a new realtime route, both documents
	// signed with the next sequence, in files of their own.
	dir := t.TempDir()
	var pol map[string]any
	b, err := os.ReadFile(c.policy)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &pol); err != nil {
		t.Fatal(err)
	}
	delete(pol, "signed_by")
	delete(pol, "signature")
	g := pol["route_groups"].([]any)[0].(map[string]any)
	g["routes"] = append(g["routes"].([]any), c.route("orders.live", "GET", "/v1/live/{id}", map[string]any{"freshness_class": "realtime"}))
	edited := filepath.Join(dir, "policy.edited.json")
	if b, err = json.Marshal(pol); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(edited, b, 0o644); err != nil {
		t.Fatal(err)
	}
	policy2, trust2 := filepath.Join(dir, "policy.json"), filepath.Join(dir, "trust.json")
	c.resign(t, edited, policy2, 2)
	c.resign(t, c.trust, trust2, 2)

	// The one documented command.
	mustBundlepub(t, "publish", "--nats-url", c.url, "--trust-material", trust2, "--policy-bundle", policy2,
		"--bundle-public-key", c.bundlePub)
	published := time.Now()
	c.allOn(t, 1, 2, 2)

	hc := &http.Client{Timeout: 30 * time.Second}
	seq := 0
	live := func() string {
		seq++
		return outcome(t, hc, c.signed(t, "GET", fmt.Sprintf("%s/v1/live/%d", n.URL, seq), "orders.live", nil))
	}
	testwait.Until(t, 30*time.Second, "the new realtime route allowed", func() error {
		if got := live(); got != "200" {
			return fmt.Errorf("orders.live = %s", got)
		}
		return nil
	})
	t.Logf("new realtime route allowed %s after the one-shot publish", time.Since(published).Round(time.Millisecond))
	// Well past the realtime window and the 6 s after which it used to go
	// stale, every request to it is still allowed.
	until := time.Now().Add(3*realtimeWindow + 6*time.Second)
	requests := 0
	for time.Now().Before(until) {
		if got := live(); got != "200" {
			t.Fatalf("orders.live = %s %s after the one-shot publish, want 200 while the watch publisher runs", got, time.Since(published))
		}
		requests++
		time.Sleep(200 * time.Millisecond) // paces the requests; nothing waits on an effect here
	}
	t.Logf("orders.live allowed for %s after the publish (%d requests)", time.Since(published).Round(time.Millisecond), requests)
	if !strings.Contains(watcher.logs.String(), "the bucket holds a newer pair") {
		t.Errorf("the watch publisher did not say it beacons the newer pair:\n%s", watcher.logs.String())
	}
}
