package bundlekv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"

	"github.com/tpcluster/tpcluster/internal/bundle"
)

// Applied describes a document that became part of the current pair.
type Applied struct {
	Kind     Kind
	Sequence int64
	SHA256   string
	Snapshot *bundle.Snapshot // the pair it is part of
}

// Rejection describes a document or beacon the watcher refused (SPEC §8.2:
// the bundle_rejected event carries kind, sequence, digest and reason).
type Rejection struct {
	Kind Kind
	// Sequence is the one the document claims; it was not verified. -1 when
	// the document has none that can be read.
	Sequence int64
	SHA256   string // of the refused bytes
	Err      error  // why; a *RollbackError for a rollback
}

// WatcherConfig configures a Watcher.
type WatcherConfig struct {
	// JetStream is the handle the watcher uses; status requests are answered
	// on its connection. Required.
	JetStream jetstream.JetStream
	// Bucket is the KV bucket. If empty, DefaultBucket.
	Bucket string
	// Replicas is the bucket's replica count if this watcher creates it.
	// If zero, 1.
	Replicas int
	// NoCreate never creates the bucket: it must exist (created by the
	// admin role, docs/NATS-SECURITY.md). Set it with a role credential,
	// which has no right to create streams.
	NoCreate bool
	// Options verify documents as files are verified (SPEC §8.2): accepted
	// bundle-signing keys, unsigned development mode. ModTime is set per
	// document (the entry's time, or the cache file's).
	Options bundle.Options
	// BeaconKeys are the accepted beacon keys (--beacon-public-key). If
	// empty, every beacon is refused and the view time is the policy's
	// issued_at.
	BeaconKeys []bundle.BeaconVerifyKey
	// CacheDir keeps the last verified pair on disk (SPEC §8.2). If empty,
	// nothing is kept.
	CacheDir string
	// NodeID names this node in status replies.
	NodeID string
	// RealtimeWindow is the realtime freshness window (SPEC §8.3), for the
	// stale classes of status replies. If zero, 5s.
	RealtimeWindow time.Duration
	// ReconcileInterval is how often each key is read directly, to catch
	// what a dead watch missed. If zero, 10s; at most 30s (SPEC §8.2).
	ReconcileInterval time.Duration
	// MaxBeaconSkew is how far a beacon's issued_at may be ahead of Now; a
	// beacon further ahead is refused, so that one bad clock cannot keep a
	// node fresh after beacons stop. If zero, 30s.
	MaxBeaconSkew time.Duration
	// Timeout bounds each KV call. If zero, 5s.
	Timeout time.Duration
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
	// Logger receives lifecycle and degradation messages. If nil, they are
	// discarded.
	Logger *slog.Logger
	// MeterProvider provides the bundle metrics. If nil, no metrics.
	MeterProvider metric.MeterProvider
	// OnApply, if set, is told about each document that became part of the
	// current pair (the bundle_applied event, SPEC §8.2), including those of
	// a pair read from the disk cache, when Run starts. Calls come from
	// Run's goroutine, one at a time, never under a lock; a slow OnApply
	// delays the next update.
	OnApply func(Applied)
	// OnReject, if set, is told about each refused document (the
	// bundle_rejected event), like OnApply. Refused beacons are reported at
	// most once a minute (a wrong beacon key would otherwise report every
	// beacon interval); all of them are counted.
	OnReject func(Rejection)
}

// Watcher keeps the verified pair of the bundle bucket (SPEC §8.2). Snapshot
// and Status are safe for concurrent use; Run owns everything else.
type Watcher struct {
	cfg     WatcherConfig
	log     *slog.Logger
	metrics *metrics
	snap    atomic.Pointer[bundle.Snapshot]

	// Owned by New, then by Run's goroutine.
	policy    *bundle.Policy
	trust     *bundle.TrustMaterial
	policyRaw []byte // the exact bytes of policy, for the disk cache
	trustRaw  []byte
	beacon    *bundle.Beacon    // the newest valid beacon seen, covering or not
	covered   time.Time         // issued_at of the newest beacon that covers the current pair
	policyAt  time.Time         // the policy's issued_at, or when it was applied if that is earlier by more than MaxBeaconSkew
	rev       map[string]uint64 // the last revision handled, by key
	revSum    map[string]string // digest of the value at that revision, by key
	// bucketCreated is when the bucket's stream was created, as the last
	// reconcile saw it; a change means the bucket was recreated.
	bucketCreated time.Time
	cached        bool      // the pair came from the disk cache
	lastBeacon    time.Time // when a refused beacon was last reported
}

// NewWatcher checks cfg and returns a Watcher. With a CacheDir it reads and
// re-verifies the cached pair, so Snapshot answers before NATS does; a cache
// that fails verification is logged and ignored.
func NewWatcher(cfg WatcherConfig) (*Watcher, error) {
	var errs []error
	if cfg.JetStream == nil {
		errs = append(errs, errors.New("JetStream is required"))
	}
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if !validBucket(cfg.Bucket) {
		errs = append(errs, fmt.Errorf("bucket name %q: only letters, digits, - and _ are allowed", cfg.Bucket))
	}
	if cfg.ReconcileInterval < 0 || cfg.ReconcileInterval > 30*time.Second {
		errs = append(errs, fmt.Errorf("reconcile interval %v: must be at most 30s (SPEC §8.2)", cfg.ReconcileInterval))
	}
	if cfg.RealtimeWindow < 0 || cfg.MaxBeaconSkew < 0 || cfg.Timeout < 0 {
		errs = append(errs, errors.New("negative realtime window, beacon skew or timeout"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("bundlekv: watcher config: %w", err)
	}
	if cfg.RealtimeWindow == 0 {
		cfg.RealtimeWindow = 5 * time.Second
	}
	if cfg.ReconcileInterval == 0 {
		cfg.ReconcileInterval = 10 * time.Second
	}
	if cfg.MaxBeaconSkew == 0 {
		cfg.MaxBeaconSkew = 30 * time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{cfg: cfg, log: cfg.Logger, rev: make(map[string]uint64), revSum: make(map[string]string)}
	var err error
	if w.metrics, err = newMetrics(cfg.MeterProvider, w); err != nil {
		return nil, fmt.Errorf("bundlekv: metrics: %w", err)
	}
	if len(cfg.BeaconKeys) == 0 {
		w.log.Warn("no beacon public key: beacons are refused and realtime routes go stale once the policy's issued_at is older than the realtime window")
	}
	if cfg.CacheDir != "" {
		w.loadCache()
	}
	return w, nil
}

// Snapshot returns the current pair, or nil while none is loaded.
func (w *Watcher) Snapshot() *bundle.Snapshot { return w.snap.Load() }

// handle applies one bucket entry, from the watch or a direct read. It
// reports whether the entry was new to the watcher.
//
// The watch and the reconcile deliver the same revision twice: the same
// revision with the same bytes is skipped. From the watch, a revision lower
// than the last one means the bucket was recreated, and the entry is handled
// (its bytes decide, and a rollback is refused). A recreated bucket numbers
// from 1 again, so the same revision with other bytes is handled too, from
// either source. A direct read may be answered by a replica that lags, so
// from a read a lower revision does not count.
func (w *Watcher) handle(ctx context.Context, e jetstream.KeyValueEntry, fromWatch bool) bool {
	key := e.Key()
	kind, ok := keyKind(key)
	if !ok {
		w.log.Debug("ignoring unknown key in the bundle bucket", "key", key)
		return false
	}
	sum := digest(e.Value())
	if last := w.rev[key]; (e.Revision() == last && sum == w.revSum[key]) || (!fromWatch && e.Revision() < last) {
		return false
	}
	w.rev[key], w.revSum[key] = e.Revision(), sum
	if op := e.Operation(); op != jetstream.KeyValuePut {
		w.log.Warn("bundle key removed from the bucket; keeping the last good pair", "kind", kind, "operation", op.String(), "revision", e.Revision())
		return true
	}
	if kind == KindBeacon {
		w.applyBeacon(ctx, e.Value())
	} else {
		w.applyDocument(ctx, kind, e.Value(), e.Created())
	}
	return true
}

// applyDocument verifies a trust material or policy bundle and, unless it
// fails or rolls back, makes it part of the current pair (SPEC §5.3, §8.2).
func (w *Watcher) applyDocument(ctx context.Context, kind Kind, data []byte, created time.Time) {
	sum := digest(data)
	if (kind == KindTrustMaterial && w.trust != nil && w.trust.SHA256 == sum) ||
		(kind == KindPolicyBundle && w.policy != nil && w.policy.SHA256 == sum) {
		return // the identical bytes again: a no-op
	}
	opts := w.cfg.Options
	opts.ModTime = created
	// The new document's sequence and signedness, and those of the one of
	// the same kind the node holds (haveCurrent false: none yet).
	var (
		seq                        int64
		signed                     bool
		currentSeq                 int64
		haveCurrent, currentSigned bool
		err                        error
		trust                      *bundle.TrustMaterial
		pol                        *bundle.Policy
	)
	if kind == KindTrustMaterial {
		if trust, err = bundle.ParseTrustMaterial(data, opts); err == nil {
			seq, signed = trust.Sequence, trust.Signed
		}
		if haveCurrent = w.trust != nil; haveCurrent {
			currentSeq, currentSigned = w.trust.Sequence, w.trust.Signed
		}
	} else {
		if pol, err = bundle.ParsePolicy(data, opts); err == nil {
			seq, signed = pol.Sequence, pol.Signed
		}
		if haveCurrent = w.policy != nil; haveCurrent {
			currentSeq, currentSigned = w.policy.Sequence, w.policy.Signed
		}
	}
	if err != nil {
		w.reject(ctx, Rejection{Kind: kind, Sequence: claimedSequence(data), SHA256: sum, Err: err})
		return
	}
	// Only two unsigned development documents (sequence 0 by default) may
	// replace each other without a rising sequence.
	if haveCurrent && seq <= currentSeq && (signed || currentSigned) {
		w.reject(ctx, Rejection{Kind: kind, Sequence: seq, SHA256: sum, Err: &RollbackError{Kind: kind, Sequence: seq, Current: currentSeq}})
		return
	}
	if trust != nil {
		w.trust, w.trustRaw = trust, data
	} else {
		w.policy, w.policyRaw = pol, data
		w.setPolicyAt(pol)
	}
	// A beacon seen before its pair counts once the pair is complete.
	w.covered = time.Time{}
	if b := w.beacon; b != nil && b.Covers(w.policy, w.trust) {
		w.covered = b.IssuedAt
	}
	w.metrics.applied(ctx, kind)
	w.log.Info("bundle document verified", "kind", kind, "sequence", seq, "sha256", sum)
	pairWasIncomplete := w.snap.Load() == nil
	if s := w.publish(); s != nil {
		w.writeCache()
		if pairWasIncomplete {
			// Both documents are new to the node's view.
			w.applied(s, KindTrustMaterial, KindPolicyBundle)
		} else {
			w.applied(s, kind)
		}
	}
}

// applyBeacon verifies a beacon and, when it is the newest, lets it move the
// view time (SPEC §8.3).
func (w *Watcher) applyBeacon(ctx context.Context, data []byte) {
	b, err := bundle.ParseBeacon(data, w.cfg.BeaconKeys)
	if err == nil {
		if ahead := b.IssuedAt.Sub(w.cfg.Now()); ahead > w.cfg.MaxBeaconSkew {
			err = fmt.Errorf("beacon issued_at is %s ahead of this node's clock (more than %s)", ahead.Round(time.Second), w.cfg.MaxBeaconSkew)
		}
	}
	if err != nil {
		w.metrics.rejected(KindBeacon)
		if now := w.cfg.Now(); now.Sub(w.lastBeacon) >= time.Minute {
			w.lastBeacon = now
			w.reject(ctx, Rejection{Kind: KindBeacon, Sequence: claimedSequence(data), SHA256: digest(data), Err: err})
		}
		return
	}
	// SPEC §8.3: a beacon older than the newest seen is ignored.
	if w.beacon != nil && !b.IssuedAt.After(w.beacon.IssuedAt) {
		return
	}
	w.beacon = b
	if b.Covers(w.policy, w.trust) {
		w.covered = b.IssuedAt
		w.publish()
	}
}

// setPolicyAt fixes the view time the policy itself gives. A policy dated
// in the future must not keep realtime and bounded routes fresh until that
// date (the same bound as beacons, MaxBeaconSkew): its view time is then
// when this node applied it.
func (w *Watcher) setPolicyAt(pol *bundle.Policy) {
	w.policyAt = pol.IssuedAt
	if now := w.cfg.Now(); pol.IssuedAt.Sub(now) > w.cfg.MaxBeaconSkew {
		w.policyAt = now
		w.log.Warn("policy bundle issued_at is in the future; its view time is when it was applied",
			"policy_sequence", pol.Sequence, "issued_at", pol.IssuedAt)
	}
}

// publish stores the current pair with its view time if anything changed,
// and returns the new snapshot when the pair itself changed (nil when not,
// or when the pair is still incomplete).
func (w *Watcher) publish() *bundle.Snapshot {
	if w.policy == nil || w.trust == nil {
		return nil
	}
	vt := w.policyAt
	if w.covered.After(vt) {
		vt = w.covered
	}
	cur := w.snap.Load()
	if cur != nil && cur.Policy == w.policy && cur.Trust == w.trust && cur.ViewTime.Equal(vt) {
		return nil
	}
	s := &bundle.Snapshot{Policy: w.policy, Trust: w.trust, ViewTime: vt}
	w.snap.Store(s)
	if cur != nil && cur.Policy == s.Policy && cur.Trust == s.Trust {
		return nil // a beacon moved the view time
	}
	w.log.Info("bundle pair applied",
		"policy_sequence", s.Policy.Sequence, "policy_sha256", s.Policy.SHA256,
		"trust_sequence", s.Trust.Sequence, "trust_sha256", s.Trust.SHA256)
	return s
}

// applied reports the documents of kinds as part of the new pair s: the
// one that changed, or both when the pair just became complete.
func (w *Watcher) applied(s *bundle.Snapshot, kinds ...Kind) {
	if w.cfg.OnApply == nil {
		return
	}
	for _, kind := range kinds {
		switch kind {
		case KindTrustMaterial:
			w.cfg.OnApply(Applied{Kind: kind, Sequence: s.Trust.Sequence, SHA256: s.Trust.SHA256, Snapshot: s})
		case KindPolicyBundle:
			w.cfg.OnApply(Applied{Kind: kind, Sequence: s.Policy.Sequence, SHA256: s.Policy.SHA256, Snapshot: s})
		}
	}
}

func (w *Watcher) reject(ctx context.Context, r Rejection) {
	if r.Kind != KindBeacon {
		w.metrics.rejected(r.Kind)
	}
	w.log.Warn("bundle document refused; keeping the last good pair",
		"kind", r.Kind, "sequence", r.Sequence, "sha256", r.SHA256, "err", r.Err)
	if w.cfg.OnReject != nil {
		w.cfg.OnReject(r)
	}
}
