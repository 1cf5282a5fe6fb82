package main

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/core"
)

// readiness answers /_tp/readyz (SPEC §10.2): ready when a bundle pair is
// loaded and the ledger answers. The body always lists the bundle sequences,
// digests and age, and which freshness classes are stale; a stale realtime
// class does not make the node unready unless strict, or a whole fleet would
// leave its load balancer at once.
func readiness(ctx context.Context, stopping *atomic.Bool, snap *core.Snapshot, led interface{ Ping(context.Context) error }, realtime time.Duration, strict bool) (bool, any) {
	body := map[string]any{}
	ready := !stopping.Load()
	if stopping.Load() {
		body["shutting_down"] = true
	}
	if snap == nil || snap.Policy == nil || snap.Trust == nil {
		ready = false
		body["bundle"] = "missing"
	} else {
		age := time.Since(snap.ViewTime)
		body["policy"] = map[string]any{"sequence": snap.Policy.Sequence, "sha256": snap.Policy.SHA256}
		body["trust_material"] = map[string]any{"sequence": snap.Trust.Sequence, "sha256": snap.Trust.SHA256}
		body["view_age_seconds"] = age.Seconds()
		stale := staleClasses(snap.Policy, age, realtime)
		body["stale_classes"] = stale
		if strict && len(stale) > 0 {
			ready = false
		}
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := led.Ping(pctx); err != nil {
		ready = false
		body["ledger"] = "unavailable"
	} else {
		body["ledger"] = "ok"
	}
	body["ready"] = ready
	return ready, body
}

// staleClasses lists the freshness classes with at least one stale route.
func staleClasses(p *bundle.Policy, age, realtime time.Duration) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, r := range p.Routes {
		if r.CheckFresh(age, realtime) == bundle.FreshOK {
			continue
		}
		name := r.FreshnessName
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out
}
