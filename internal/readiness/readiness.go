// Package readiness answers /_tp/readyz (SPEC §10.2): a node is ready when
// a (trust material, policy) pair is loaded, it is not shutting down, and
// every named check passes (the replay ledger answers; later ones such as
// "audit stream present" are added by name). The JSON body always lists the
// bundle sequences, digests and age and the stale freshness classes, one
// field per check ("ok" or "unavailable"), and under "failing" each failing
// check's name and error.
//
// It decides nothing about requests and imports neither net/http nor NATS:
// checks are plain functions that the node builds around its components.
package readiness

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/core"
)

// Check reports whether one thing a node needs works; a non-nil error says
// what is wrong. It must return when ctx is done.
type Check func(ctx context.Context) error

// Failure is one reason a node is not ready, as listed in the body.
type Failure struct {
	Name  string `json:"name"`
	Error string `json:"error"`
}

// Built-in names: the fields the body always has, and the names of the
// failures Readiness itself reports. Add refuses them as check names.
const (
	nameShutdown = "shutting_down"
	nameBundle   = "bundle"
	nameStale    = "stale_classes"
)

var reserved = map[string]bool{
	"ready": true, "failing": true, nameShutdown: true, nameBundle: true, nameStale: true,
	"policy": true, "trust_material": true, "view_age_seconds": true,
}

// Config configures a Readiness.
type Config struct {
	// Snapshot returns the node's current pair, nil while none is loaded.
	// Required.
	Snapshot func() *core.Snapshot
	// RealtimeWindow is the realtime freshness class's window (SPEC §8.2).
	// If zero, bundle.Route.CheckFresh's own default applies.
	RealtimeWindow time.Duration
	// Timeout bounds each check. If zero, 2s.
	Timeout time.Duration
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
}

// Readiness is a node's readiness. It is safe for concurrent use: checks
// may be added while readyz is served.
type Readiness struct {
	cfg      Config
	stopping atomic.Bool

	mu     sync.Mutex
	checks []named // guarded by mu; in the order added
}

type named struct {
	name  string
	check Check
}

// New returns a Readiness with no named checks.
func New(cfg Config) (*Readiness, error) {
	if cfg.Snapshot == nil {
		return nil, fmt.Errorf("readiness: Snapshot is required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Readiness{cfg: cfg}, nil
}

// Add registers a named check. The name becomes a body field, so it must be
// a lower-case snake_case word that is neither a built-in field nor already
// added.
func (r *Readiness) Add(name string, c Check) error {
	if c == nil || !validName(name) || reserved[name] {
		return fmt.Errorf("readiness: check name %q: want a new lower-case snake_case name and a check", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.checks {
		if n.name == name {
			return fmt.Errorf("readiness: check %q added twice", name)
		}
	}
	r.checks = append(r.checks, named{name, c})
	return nil
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Stop makes the node unready for good: STYLE §6, the first step of a
// shutdown, so load balancers stop sending before the HTTP drain.
func (r *Readiness) Stop() { r.stopping.Store(true) }

// Check runs every named check (concurrently, each bounded by Timeout) and
// returns whether the node is ready and the body. A stale realtime class
// does not make the node unready unless strict, or a whole fleet would leave
// its load balancer at once (SPEC §10.2). Its signature is
// proxy.Config.Ready.
func (r *Readiness) Check(ctx context.Context, strict bool) (bool, any) {
	body := map[string]any{}
	var failing []Failure
	if r.stopping.Load() {
		body[nameShutdown] = true
		failing = append(failing, Failure{nameShutdown, "the node is shutting down"})
	}
	if snap := r.cfg.Snapshot(); snap == nil || snap.Policy == nil || snap.Trust == nil {
		body[nameBundle] = "missing"
		failing = append(failing, Failure{nameBundle, "no (trust material, policy) pair loaded"})
	} else {
		age := r.cfg.Now().Sub(snap.ViewTime)
		body["policy"] = map[string]any{"sequence": snap.Policy.Sequence, "sha256": snap.Policy.SHA256}
		body["trust_material"] = map[string]any{"sequence": snap.Trust.Sequence, "sha256": snap.Trust.SHA256}
		body["view_age_seconds"] = age.Seconds()
		stale := staleClasses(snap.Policy, age, r.cfg.RealtimeWindow)
		body[nameStale] = stale
		if strict && len(stale) > 0 {
			failing = append(failing, Failure{nameStale, "stale: " + strings.Join(stale, ", ")})
		}
	}

	r.mu.Lock()
	checks := append([]named(nil), r.checks...)
	r.mu.Unlock()
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, n := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
			defer cancel()
			errs[i] = n.check(cctx)
		})
	}
	wg.Wait()
	for i, n := range checks {
		if errs[i] != nil {
			body[n.name] = "unavailable"
			failing = append(failing, Failure{n.name, errs[i].Error()})
			continue
		}
		body[n.name] = "ok"
	}

	if failing == nil {
		failing = []Failure{}
	}
	body["failing"] = failing
	ready := len(failing) == 0
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
		if name := r.FreshnessName; !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out
}
