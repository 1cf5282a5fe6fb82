package ledger

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/tpcluster/tpcluster/internal/core"
)

// BucketFor names region's ledger bucket: base + "_" + the region in upper
// case. Names carry the region so that no two regions' streams listen on
// the same subjects (docs/MULTI-REGION.md).
func BucketFor(base, region string) string {
	if base == "" {
		base = DefaultBucket
	}
	return base + "_" + strings.ToUpper(region)
}

// Regional routes each consume to the ledger of the region its entry names
// (core.LedgerEntry.Region): the node's own ledger for an empty region, else
// the home region's bucket, reached through the NATS supercluster. It never
// creates another region's bucket; that region's nodes do. It implements
// core.Ledger and is safe for concurrent use.
type Regional struct {
	local *Ledger
	cfg   Config // the template of remote handles: same JetStream, timeout, node

	mu      sync.Mutex
	remotes map[string]*Ledger // guarded by mu; region -> attached ledger
}

// NewRegional returns a router whose own-region consumes go to local and
// whose other consumes attach, on first use, to BucketFor(cfg.Bucket,
// region). cfg is the configuration local was made with, without its
// region suffix in Bucket.
func NewRegional(local *Ledger, cfg Config) *Regional {
	return &Regional{local: local, cfg: cfg, remotes: make(map[string]*Ledger)}
}

// Consume implements core.Ledger. A home region that cannot be reached is
// ErrLedgerUnavailable, like any other ledger failure: never allow on doubt.
func (r *Regional) Consume(ctx context.Context, key core.LedgerKey, ttl time.Duration, e core.LedgerEntry) error {
	if e.Region == "" {
		return r.local.Consume(ctx, key, ttl, e)
	}
	l, err := r.remote(ctx, e.Region)
	if err != nil {
		return fmt.Errorf("ledger: consume %s in region %s: %w: %w", key, e.Region, core.ErrLedgerUnavailable, err)
	}
	return l.Consume(ctx, key, ttl, e)
}

// Ping checks the node's own ledger: another region's outage must not take
// this region's nodes out of their load balancers.
func (r *Regional) Ping(ctx context.Context) error { return r.local.Ping(ctx) }

// remote returns the attached ledger of region, attaching on first use
// within the ledger timeout. A failed attach is retried on the next call.
func (r *Regional) remote(ctx context.Context, region string) (*Ledger, error) {
	r.mu.Lock()
	l, ok := r.remotes[region]
	r.mu.Unlock()
	if ok {
		return l, nil
	}
	cfg := r.cfg
	cfg.Bucket = BucketFor(r.cfg.Bucket, region)
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	l, err := Attach(actx, cfg)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.remotes[region]; ok {
		l.Close()
		return prev, nil
	}
	r.remotes[region] = l
	return l, nil
}

// Close closes every attached ledger (not the local one, which the caller
// owns).
func (r *Regional) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.remotes {
		l.Close()
	}
	clear(r.remotes)
	return nil
}

// Attach returns a Ledger on an existing bucket, which it never creates:
// another region's bucket belongs to that region's nodes. It checks the
// bucket like New does (history 1, per-key TTLs, a long enough max age; any
// replica count).
func Attach(ctx context.Context, cfg Config) (*Ledger, error) {
	l, err := newLedger(cfg)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	stream, err := l.js.Stream(ctx, kvStreamPrefix+l.bucket)
	if err != nil {
		return nil, fmt.Errorf("ledger: attach bucket %s: %w", l.bucket, err)
	}
	sc := stream.CachedInfo().Config
	if err := checkStream(sc, sc.Replicas, cfg.MaxAge); err != nil {
		return nil, fmt.Errorf("ledger: attach bucket %s: %w", l.bucket, err)
	}
	l.stream, l.maxAge = stream, sc.MaxAge
	if l.metrics, err = newMetrics(nil, l); err != nil {
		return nil, fmt.Errorf("ledger: metrics: %w", err)
	}
	return l, nil
}

// Probe writes the node's probe key to its own region's bucket: readiness
// is about this region's ledger (see Ping).
func (r *Regional) Probe(ctx context.Context) error { return r.local.Probe(ctx) }
