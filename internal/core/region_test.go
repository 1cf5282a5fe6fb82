package core

import (
	"context"
	"time"

	"testing"

	"github.com/tpcluster/tpcluster/internal/reason"
)

// TestRegions: step 11a picks the ledger region, or denies a region-bound
// audience outside its home.
func TestRegions(t *testing.T) {
	tests := []struct {
		name       string
		nodeRegion string
		mapping    doc // audience_regions; nil: absent
		want       reason.Code
		wantLedger string
	}{
		{"no --region ignores the map", "", doc{testAudience: doc{"home_region": "us", "mode": "region_bound"}}, reason.Allowed, ""},
		{"unmapped audience is local", "eu", nil, reason.Allowed, ""},
		{"region bound at home", "eu", doc{testAudience: doc{"home_region": "eu", "mode": "region_bound"}}, reason.Allowed, ""},
		{"region bound elsewhere", "eu", doc{testAudience: doc{"home_region": "us", "mode": "region_bound"}}, reason.AudienceRegionMismatch, ""},
		{"home region at home", "us", doc{testAudience: doc{"home_region": "us", "mode": "home_region"}}, reason.Allowed, ""},
		{"home region elsewhere", "eu", doc{testAudience: doc{"home_region": "us", "mode": "home_region"}}, reason.Allowed, "us"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			led := &regionLedger{memLedger: newMemLedger()}
			f := newFixture(t, func(c *Config) { c.Region = tt.nodeRegion; c.Ledger = led })
			pol := testPolicy()
			if tt.mapping != nil {
				pol["audience_regions"] = tt.mapping
			}
			f.snap.Store(loadSnapshot(t, pol, testTrust(f.key.PublicKeyB64()), f.now))
			d := f.p.Decide(t.Context(), f.request(derivedCall()))
			if d.Reason != tt.want {
				t.Fatalf("Decide = %q (%v), want %q", d.Reason, d.Err, tt.want)
			}
			if tt.want == reason.Allowed && led.region != tt.wantLedger {
				t.Errorf("consumed in region %q, want %q", led.region, tt.wantLedger)
			}
			if tt.want != reason.Allowed && led.calls.Load() != 0 {
				t.Error("a region denial touched the ledger")
			}
		})
	}
}

// regionLedger records the region of the last consume.
type regionLedger struct {
	*memLedger
	region string
}

func (l *regionLedger) Consume(ctx context.Context, key LedgerKey, ttl time.Duration, e LedgerEntry) error {
	l.region = e.Region
	return l.memLedger.Consume(ctx, key, ttl, e)
}
