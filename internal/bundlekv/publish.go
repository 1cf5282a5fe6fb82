package bundlekv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/bundle"
)

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// JetStream is the handle the publisher uses. Required.
	JetStream jetstream.JetStream
	// Bucket is the KV bucket. If empty, DefaultBucket.
	Bucket string
	// Replicas is the bucket's replica count if this publisher creates it.
	// If zero, 1.
	Replicas int
	// NoCreate never creates the bucket: it must exist (created by the
	// admin role, docs/NATS-SECURITY.md). Set it with a role credential,
	// which has no right to create streams.
	NoCreate bool
	// TrustMaterial and PolicyBundle are the paths of the signed files.
	// Required.
	TrustMaterial, PolicyBundle string
	// Options verify both documents exactly as verifierd does: the accepted
	// bundle-signing keys (SPEC §8.1). Set the same keys the fleet accepts,
	// so that "not above the sequence already published" compares with what
	// the nodes applied.
	Options bundle.Options
	// BeaconKey signs freshness beacons (SPEC §8.3). If nil, no beacons are
	// published and realtime routes go stale on every node.
	BeaconKey *bundle.BeaconSigningKey
	// BeaconIssuer is signed_by.issuer of each beacon. If empty, "bundlepub".
	BeaconIssuer string
	// BeaconInterval is how often Run publishes a beacon. If zero, 2s.
	BeaconInterval time.Duration
	// Watch makes Run republish when either file changes (--watch).
	Watch bool
	// WatchInterval is how often Run looks at the files with Watch. If zero,
	// 1s.
	WatchInterval time.Duration
	// Timeout bounds each KV call. If zero, 5s.
	Timeout time.Duration
	// Now is the clock of beacons. If nil, time.Now.
	Now func() time.Time
	// Logger receives lifecycle and degradation messages. If nil, they are
	// discarded.
	Logger *slog.Logger
}

// Result says what Publish did with one document.
type Result struct {
	Kind     Kind
	Sequence int64
	SHA256   string
	Revision uint64 // the document's revision in the bucket
	// Put is false when the bucket already held these exact bytes: nothing
	// was written (SPEC §8.1, restarting bundlepub is normal).
	Put bool
}

// Publisher publishes a trust material and policy bundle pair and keeps
// beacons for it flowing. Publish and Run must not be called concurrently;
// Run owns the publisher while it runs.
type Publisher struct {
	cfg PublisherConfig
	log *slog.Logger
	kv  jetstream.KeyValue // opened by the first Publish

	// The pair last published, found in place or adopted from the bucket
	// (current), for beacons, and the bucket revisions it was read at.
	policy              *bundle.Policy
	trust               *bundle.TrustMaterial
	trustRev, policyRev uint64
	// refused is the bucket state (trust, policy revisions) current last
	// refused, so it says so once, not every interval.
	refused [2]uint64
	// Files as last read by Publish, for Watch.
	trustStamp, policyStamp fileStamp

	beaconFailing bool // a beacon put failed and nothing since succeeded

	// Unix nanoseconds of the last beacon attempt and the last one put,
	// for health checks from other goroutines (BeaconTimes); 0: none yet.
	beaconTried, beaconPut atomic.Int64
}

// BeaconTimes reports when Run last tried to put a beacon and when one was
// last put; zero times mean none yet. A stale attempt means Run is stuck or
// gone; a stale put with fresh attempts means NATS refuses them. Safe for
// concurrent use.
func (p *Publisher) BeaconTimes() (tried, put time.Time) {
	at := func(ns int64) time.Time {
		if ns == 0 {
			return time.Time{}
		}
		return time.Unix(0, ns)
	}
	return at(p.beaconTried.Load()), at(p.beaconPut.Load())
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// NewPublisher checks cfg and returns a Publisher. It does no I/O.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	var errs []error
	if cfg.JetStream == nil {
		errs = append(errs, errors.New("JetStream is required"))
	}
	if cfg.TrustMaterial == "" || cfg.PolicyBundle == "" {
		errs = append(errs, errors.New("both a trust material and a policy bundle file are required"))
	}
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if !validBucket(cfg.Bucket) {
		errs = append(errs, fmt.Errorf("bucket name %q: only letters, digits, - and _ are allowed", cfg.Bucket))
	}
	if cfg.BeaconInterval < 0 || cfg.WatchInterval < 0 || cfg.Timeout < 0 {
		errs = append(errs, errors.New("negative beacon interval, watch interval or timeout"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("bundlekv: publisher config: %w", err)
	}
	if cfg.BeaconIssuer == "" {
		cfg.BeaconIssuer = "bundlepub"
	}
	if cfg.BeaconInterval == 0 {
		cfg.BeaconInterval = 2 * time.Second
	}
	if cfg.WatchInterval == 0 {
		cfg.WatchInterval = time.Second
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
	return &Publisher{cfg: cfg, log: cfg.Logger}, nil
}

// document is one file read and verified, ready to publish.
type document struct {
	kind     Kind
	key      string
	data     []byte
	sequence int64
	sha256   string
	// verify parses bytes found in the bucket with the same options, to
	// learn the sequence the nodes applied.
	verify func([]byte) (int64, error)
}

// Publish reads both files, verifies them, and puts each into the bucket
// unless the bucket already holds the same bytes. It puts nothing when either
// file fails verification or would roll back (a *RollbackError), so a node
// never sees half of a refused pair. Then it publishes a beacon for the pair
// (when a beacon key is set). ctx bounds the whole call.
func (p *Publisher) Publish(ctx context.Context) ([]Result, error) {
	res, err := p.publish(ctx)
	if err != nil {
		return res, fmt.Errorf("bundlekv: publish: %w", err)
	}
	return res, nil
}

func (p *Publisher) publish(ctx context.Context) ([]Result, error) {
	ts, tdata, err := readStamped(p.cfg.TrustMaterial)
	if err != nil {
		return nil, &filesError{err}
	}
	ps, pdata, err := readStamped(p.cfg.PolicyBundle)
	if err != nil {
		return nil, &filesError{err}
	}
	trustOpts, policyOpts := p.cfg.Options, p.cfg.Options
	trustOpts.ModTime, policyOpts.ModTime = ts.mod, ps.mod
	trust, err := bundle.ParseTrustMaterial(tdata, trustOpts)
	if err != nil {
		return nil, &filesError{fmt.Errorf("%s: %w", p.cfg.TrustMaterial, err)}
	}
	pol, err := bundle.ParsePolicy(pdata, policyOpts)
	if err != nil {
		return nil, &filesError{fmt.Errorf("%s: %w", p.cfg.PolicyBundle, err)}
	}
	docs := []document{
		{kind: KindTrustMaterial, key: KeyTrustMaterial, data: tdata, sequence: trust.Sequence, sha256: trust.SHA256,
			verify: func(b []byte) (int64, error) {
				t, err := bundle.ParseTrustMaterial(b, p.cfg.Options)
				if err != nil {
					return 0, err
				}
				return t.Sequence, nil
			}},
		{kind: KindPolicyBundle, key: KeyPolicyBundle, data: pdata, sequence: pol.Sequence, sha256: pol.SHA256,
			verify: func(b []byte) (int64, error) {
				p, err := bundle.ParsePolicy(b, p.cfg.Options)
				if err != nil {
					return 0, err
				}
				return p.Sequence, nil
			}},
	}
	if err := p.open(ctx); err != nil {
		return nil, err
	}
	// SPEC §8.1: refused with a clear message rather than JetStream's.
	if limit := p.cfg.JetStream.Conn().MaxPayload(); limit > 0 {
		for _, d := range docs {
			if int64(len(d.data)) > limit {
				return nil, &filesError{fmt.Errorf("%s is %d bytes, above the NATS server's max payload of %d bytes: raise max_payload on every server or shrink the document", d.kind, len(d.data), limit)}
			}
		}
	}
	// Check both before putting either.
	revs := make([]uint64, len(docs))
	same := make([]bool, len(docs))
	for i, d := range docs {
		if revs[i], same[i], err = p.check(ctx, d); err != nil {
			return nil, err
		}
	}
	results := make([]Result, len(docs))
	for i, d := range docs {
		results[i] = Result{Kind: d.kind, Sequence: d.sequence, SHA256: d.sha256, Revision: revs[i]}
		if same[i] {
			continue
		}
		rev, err := p.put(ctx, d, revs[i])
		if err != nil {
			return results[:i], err
		}
		results[i].Revision, results[i].Put = rev, true
		p.log.Info("document published", "kind", d.kind, "sequence", d.sequence, "sha256", d.sha256, "revision", rev)
	}
	p.trust, p.policy = trust, pol
	p.trustRev, p.policyRev = results[0].Revision, results[1].Revision
	p.trustStamp, p.policyStamp = ts, ps
	if p.cfg.BeaconKey != nil {
		// A beacon right away, so realtime routes are fresh for the new
		// pair without waiting an interval.
		p.beacon(ctx)
	}
	return results, nil
}

// open opens (or creates) the bucket once.
func (p *Publisher) open(ctx context.Context) error {
	if p.kv != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	kv, err := openBucket(ctx, p.cfg.JetStream, p.cfg.Bucket, p.cfg.Replicas, p.cfg.NoCreate)
	if err != nil {
		return err
	}
	p.kv = kv
	return nil
}

// check compares d with what the bucket holds under its key. It returns the
// revision to update from (0: the key is absent) and whether the bucket
// already holds these exact bytes.
func (p *Publisher) check(ctx context.Context, d document) (rev uint64, same bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	e, err := p.kv.Get(ctx, d.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read %s from bucket %s: %w", d.key, p.cfg.Bucket, err)
	}
	if bytes.Equal(e.Value(), d.data) {
		return e.Revision(), true, nil
	}
	cur, err := d.verify(e.Value())
	if err != nil {
		// Nodes with the same keys refused it too: its sequence is no floor.
		p.log.Warn("bucket holds a document that does not verify with the accepted keys; replacing it",
			"kind", d.kind, "revision", e.Revision(), "err", err)
		return e.Revision(), false, nil
	}
	if d.sequence <= cur {
		return 0, false, &filesError{&RollbackError{Kind: d.kind, Sequence: d.sequence, Current: cur}}
	}
	return e.Revision(), false, nil
}

// put writes d over revision rev (0: create), so that a concurrent publisher
// is never overwritten unseen.
func (p *Publisher) put(ctx context.Context, d document, rev uint64) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	var err error
	var out uint64
	if rev == 0 {
		out, err = p.kv.Create(ctx, d.key, d.data)
	} else {
		out, err = p.kv.Update(ctx, d.key, d.data, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, fmt.Errorf("put %s: changed in bucket %s by someone else meanwhile; publish again", d.key, p.cfg.Bucket)
	}
	if err != nil {
		return 0, fmt.Errorf("put %s into bucket %s: %w", d.key, p.cfg.Bucket, err)
	}
	return out, nil
}

// Run publishes a beacon every BeaconInterval for the pair of the last
// successful Publish and, with Watch, publishes again when a file changes.
// Failures are logged and retried; Run returns nil when ctx is done, and an
// error only if no Publish has succeeded yet.
func (p *Publisher) Run(ctx context.Context) error {
	if p.policy == nil {
		return errors.New("bundlekv: publisher: Run needs a successful Publish first")
	}
	var beacons, files <-chan time.Time
	if p.cfg.BeaconKey != nil {
		t := time.NewTicker(p.cfg.BeaconInterval)
		defer t.Stop()
		beacons = t.C
	} else {
		p.log.Warn("no beacon key: no freshness beacons, realtime routes go stale on every node")
	}
	if p.cfg.Watch {
		t := time.NewTicker(p.cfg.WatchInterval)
		defer t.Stop()
		files = t.C
	}
	var failed [2]fileStamp // the files of a publish refused for good
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-beacons:
			p.beacon(ctx)
		case <-files:
			ts, err1 := statFile(p.cfg.TrustMaterial)
			ps, err2 := statFile(p.cfg.PolicyBundle)
			if err := errors.Join(err1, err2); err != nil {
				p.log.Warn("watched file unreadable", "err", err)
				continue
			}
			if (ts == p.trustStamp && ps == p.policyStamp) || [2]fileStamp{ts, ps} == failed {
				continue
			}
			res, err := p.Publish(ctx)
			if err != nil {
				if _, ok := errors.AsType[*filesError](err); ok {
					// Refused for what the files hold: wait for them to
					// change again rather than retrying every interval.
					failed = [2]fileStamp{ts, ps}
				}
				p.log.Error("changed files not published; keeping beacons for the pair in place", "err", err)
				continue
			}
			for _, r := range res {
				p.log.Info("changed files published", "kind", r.Kind, "sequence", r.Sequence, "sha256", r.SHA256, "put", r.Put)
			}
		}
	}
}

// beacon signs and puts one beacon for the current pair (SPEC §8.3), the
// bucket's if another publisher put a newer one there (current).
func (p *Publisher) beacon(ctx context.Context) {
	p.beaconTried.Store(p.cfg.Now().UnixNano())
	if err := p.current(ctx); err != nil {
		// Logged once per outage, not every interval.
		if !p.beaconFailing {
			p.log.Warn("beacon not published; retrying every interval", "err", err)
		}
		p.beaconFailing = true
		return
	}
	b, err := bundle.SignBeacon(p.policy, p.trust, p.cfg.Now(), *p.cfg.BeaconKey, p.cfg.BeaconIssuer)
	if err != nil {
		p.log.Error("sign beacon", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	if _, err := p.kv.Put(ctx, KeyFreshness, b); err != nil {
		// Logged once per outage, not every interval.
		if !p.beaconFailing {
			p.log.Warn("beacon not published; retrying every interval", "err", err)
		}
		p.beaconFailing = true
		return
	}
	p.beaconPut.Store(p.cfg.Now().UnixNano())
	if p.beaconFailing {
		p.log.Info("beacons flowing again")
	}
	p.beaconFailing = false
}

// filesError is a publish refused for what the files hold (unreadable,
// failing verification, too large, rolling back), as opposed to NATS
// trouble, which may pass by itself.
type filesError struct{ err error }

func (e *filesError) Error() string { return e.err.Error() }
func (e *filesError) Unwrap() error { return e.err }

func readStamped(path string) (fileStamp, []byte, error) {
	st, err := statFile(path)
	if err != nil {
		return fileStamp{}, nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fileStamp{}, nil, err
	}
	return st, b, nil
}

func statFile(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}, nil
}
