package ledger_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
)

// TestRegional runs two regions of three servers each, joined by gateways
// through a 40 ms (one way) latency proxy: each region's nodes create their
// own bucket in their own cluster; a home-region consume from the other
// region lands in the home bucket, exactly once; and the latency of each
// mode is what the design says (local: no WAN; home region: one WAN round
// trip). It logs what it measured.
func TestRegional(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: a six-server supercluster; CI runs it")
	}
	const wan = 40 * time.Millisecond
	regions := natstest.SuperCluster(t, wan, 3, "eu", "us")
	open := func(r natstest.Region) (*ledger.Ledger, *ledger.Regional) {
		js := natstest.JetStream(t, natstest.Connect(t, r.URLs()...))
		base := ledger.Config{JetStream: js, Replicas: 3, MaxAge: testMaxAge, NodeID: "node-" + r.Name, Timeout: 5 * time.Second}
		own := base
		own.Bucket, own.Cluster = ledger.BucketFor("", r.Name), r.Name
		l := newLedger(t, own)
		reg := ledger.NewRegional(l, base)
		t.Cleanup(func() { reg.Close() })
		return l, reg
	}
	_, eu := open(regions[0])
	_, us := open(regions[1])

	// Local consumes in each region, then home-region consumes of eu's
	// audience from us.
	measure := func(name string, r *ledger.Regional, region string, n int) []time.Duration {
		var lat []time.Duration
		for i := range n {
			k := key(fmt.Sprintf("%s-%d", name, i))
			start := time.Now()
			if err := r.Consume(t.Context(), k, time.Minute, core.LedgerEntry{Region: region}); err != nil {
				t.Fatalf("%s consume %d: %v", name, i, err)
			}
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		return lat
	}
	measure("warm-eu", us, "eu", 3) // attach and warm the gateway interest
	local := measure("local-eu", eu, "", 20)
	home := measure("home-eu-from-us", us, "eu", 20)
	t.Logf("regional ledger, WAN %s one way: local consume p50 %s max %s; home-region consume from the other region p50 %s max %s",
		wan, local[len(local)/2].Round(time.Microsecond), local[len(local)-1].Round(time.Microsecond),
		home[len(home)/2].Round(time.Microsecond), home[len(home)-1].Round(time.Microsecond))
	if home[0] < 2*wan {
		t.Errorf("a home-region consume took %s, less than one WAN round trip (%s): it did not cross the proxy", home[0], 2*wan)
	}

	// Exactly once across regions: a key consumed at home is a replay from
	// the other region, and the other way round.
	k := key("cross-region")
	if err := eu.Consume(t.Context(), k, time.Minute, core.LedgerEntry{}); err != nil {
		t.Fatal(err)
	}
	if err := us.Consume(t.Context(), k, time.Minute, core.LedgerEntry{Region: "eu"}); !errors.Is(err, core.ErrReplay) {
		t.Errorf("replay from us of a key consumed in eu = %v, want ErrReplay", err)
	}
	k2 := key("cross-region-2")
	if err := us.Consume(t.Context(), k2, time.Minute, core.LedgerEntry{Region: "eu"}); err != nil {
		t.Fatal(err)
	}
	if err := eu.Consume(t.Context(), k2, time.Minute, core.LedgerEntry{}); !errors.Is(err, core.ErrReplay) {
		t.Errorf("replay at home of a key consumed from us = %v, want ErrReplay", err)
	}
	// A region-bound key lives only in its region: the same key in us's own
	// bucket is a different entry (step 11a keeps region-bound audiences
	// out of us entirely; the ledger does not need to).
	if err := us.Consume(t.Context(), k, time.Minute, core.LedgerEntry{}); err != nil {
		t.Errorf("us's own bucket shares state with eu's: %v", err)
	}
	// A region with no bucket is unavailable, never allowed.
	if err := us.Consume(t.Context(), key("nowhere"), time.Minute, core.LedgerEntry{Region: "ap"}); !errors.Is(err, core.ErrLedgerUnavailable) {
		t.Errorf("consume in a region without a bucket = %v, want ErrLedgerUnavailable", err)
	}
}
