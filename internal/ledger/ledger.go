package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"

	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/retry"
)

// DefaultBucket is the ledger's KV bucket when Config.Bucket is empty (SPEC §7).
const DefaultBucket = "TRUSTPLANE_REPLAY"

// DefaultTimeout bounds one Consume when Config.Timeout is zero (SPEC §7).
const DefaultTimeout = 2 * time.Second

// kvStreamPrefix names the stream behind a KV bucket, "KV_<bucket>" (NATS
// ADR-8, the layout every NATS client uses).
const kvStreamPrefix = "KV_"

// Config configures a Ledger.
type Config struct {
	// JetStream is the JetStream context the ledger uses. Required. Its
	// connection should come from natsx.Connect, which never buffers a
	// write while disconnected. API prefixes and domains are not supported.
	JetStream jetstream.JetStream
	// Bucket is the KV bucket name. If empty, DefaultBucket.
	Bucket string
	// Replicas is the bucket's replica count: 1 for a single embedded node,
	// 3 in a cluster (--ledger-replicas, SPEC §7). If zero, 1.
	Replicas int
	// MaxAge is the bucket's max age, a backstop behind the per-key TTLs:
	// the max passport lifetime plus twice the clock skew, which the caller
	// computes (SPEC §7). Required. Consume refuses a TTL above the bucket's
	// max age, since JetStream would drop the key early.
	MaxAge time.Duration
	// Timeout bounds each Consume and Ping; the tighter of it and the
	// context's deadline applies. If zero, DefaultTimeout.
	Timeout time.Duration
	// NodeID is recorded in each entry, for forensics (SPEC §9 node_id).
	NodeID string
	// Now is the clock for the entry's timestamp. If nil, time.Now.
	Now func() time.Time
	// Logger receives lifecycle and degradation messages. If nil, they are
	// discarded.
	Logger *slog.Logger
	// MeterProvider provides the ledger's metrics. If nil, no metrics.
	MeterProvider metric.MeterProvider
	// Cluster, if set, places a bucket New creates in that NATS cluster
	// (the node's region, docs/MULTI-REGION.md). If empty, the server
	// places it.
	Cluster string
	// NoCreate makes New only look the bucket up: a missing bucket is an
	// error, never created. Verifier nodes holding the verifier role's
	// credentials set it: streams are created by the admin role only
	// (docs/NATS-SECURITY.md), so a deleted ledger is noticed, not silently
	// replaced by an empty one.
	NoCreate bool
}

// Ledger is the replay ledger of SPEC §7 on a JetStream KV bucket. It
// implements core.Ledger. Its methods are safe for concurrent use; it starts
// no goroutines of its own (its subscription to the stream's leader
// elections is handled on the connection's, and each election's grace
// timer, stopped by Close, on the runtime's).
type Ledger struct {
	js            jetstream.JetStream
	stream        jetstream.Stream
	bucket        string
	subjectPrefix string        // "$KV.<bucket>."
	maxAge        time.Duration // the bucket's, as found; 0 means none
	timeout       time.Duration
	node          string
	now           func() time.Time
	log           *slog.Logger
	metrics       *metrics
	placement     *jetstream.Placement
	// failover moves the connection to another server after consecutive
	// consume timeouts (a stalled or cut-off server).
	failover *natsx.TimeoutWatch
	noCreate bool
	acks     ackCheck
	created  time.Time     // the stream's creation time, as found by New
	probes   atomic.Uint64 // probe keys written, for their unique token
	// elections ends the writes in flight when the stream elects a new
	// leader (election.go).
	elections electionCut
}

// New returns a Ledger on cfg.Bucket, creating the bucket's stream (see
// StreamConfig) if it does not exist, unless cfg.NoCreate. If it exists, New
// checks that its configuration keeps the ledger's guarantees (the same
// replicas, history 1, per-key TTLs, a max age no shorter than cfg.MaxAge)
// and uses it, so any number of nodes may start at once (SPEC §10.1). ctx
// bounds the whole call.
func New(ctx context.Context, cfg Config) (*Ledger, error) {
	l, err := newLedger(cfg)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	if err := l.open(ctx, cfg.Replicas, cfg.MaxAge); err != nil {
		return nil, fmt.Errorf("ledger: bucket %s: %w", l.bucket, err)
	}
	if l.metrics, err = newMetrics(cfg.MeterProvider, l); err != nil {
		return nil, fmt.Errorf("ledger: metrics: %w", err)
	}
	if err := l.watchElections(cfg.JetStream.Conn()); err != nil {
		l.metrics.close()
		return nil, fmt.Errorf("ledger: bucket %s: %w", l.bucket, err)
	}
	l.log.Info("replay ledger ready", "bucket", l.bucket, "replicas", cfg.Replicas, "max_age", l.maxAge)
	return l, nil
}

// newLedger checks cfg and fills in its defaults.
func newLedger(cfg Config) (*Ledger, error) {
	if cfg.JetStream == nil {
		return nil, errors.New("config: JetStream is required")
	}
	if o := cfg.JetStream.Options(); o.APIPrefix != "" || o.Domain != "" {
		return nil, errors.New("config: JetStream API prefixes and domains are not supported")
	}
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if !validBucket(cfg.Bucket) {
		return nil, fmt.Errorf("config: bucket name %q: only letters, digits, - and _ are allowed", cfg.Bucket)
	}
	if cfg.Replicas < 0 || cfg.Replicas > 5 {
		return nil, fmt.Errorf("config: replicas %d: must be 1 to 5", cfg.Replicas)
	}
	if cfg.MaxAge <= 0 {
		return nil, fmt.Errorf("config: max age %v: must be positive", cfg.MaxAge)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("config: timeout %v: must not be negative", cfg.Timeout)
	}
	l := &Ledger{
		js:            cfg.JetStream,
		bucket:        cfg.Bucket,
		subjectPrefix: "$KV." + cfg.Bucket + ".",
		timeout:       cfg.Timeout,
		node:          cfg.NodeID,
		now:           cfg.Now,
		log:           cfg.Logger,
	}
	if l.timeout == 0 {
		l.timeout = DefaultTimeout
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Cluster != "" {
		l.placement = &jetstream.Placement{Cluster: cfg.Cluster}
	}
	l.failover = natsx.NewTimeoutWatch(cfg.JetStream.Conn(), l.log)
	l.noCreate = cfg.NoCreate
	l.acks.stream = kvStreamPrefix + cfg.Bucket
	return l, nil
}

// openRetryWindow bounds how long open keeps retrying while a bucket that
// another node is creating at the same moment is not yet visible.
const openRetryWindow = 15 * time.Second

// open creates the bucket or checks the one that exists, and keeps a handle
// on its stream.
func (l *Ledger) open(ctx context.Context, replicas int, maxAge time.Duration) error {
	if replicas == 0 {
		replicas = 1
	}
	stream, err := l.createOrFind(ctx, StreamConfig(l.bucket, replicas, maxAge, l.placement))
	if err != nil {
		return err
	}
	sc := stream.CachedInfo().Config
	if err := checkStream(sc, replicas, maxAge); err != nil {
		return err
	}
	if sc.MaxAge == 0 {
		l.log.Warn("replay ledger bucket has no max age backstop", "bucket", l.bucket)
	}
	if !sc.DenyDelete || !sc.DenyPurge || sc.AllowRollup {
		// A bucket made by an older version (a KV bucket with delete
		// markers, which need roll-ups and so purges): whoever may purge
		// can replay a consumed jti. Recreate it with tpnats setup.
		l.log.Warn("replay ledger bucket allows purges or deletes; recreate it with tpnats setup (docs/NATS-SECURITY.md)",
			"bucket", l.bucket, "deny_delete", sc.DenyDelete, "deny_purge", sc.DenyPurge, "allow_rollup", sc.AllowRollup)
	}
	l.stream, l.maxAge, l.created = stream, sc.MaxAge, stream.CachedInfo().Created
	return nil
}

// createOrFind creates the bucket and returns its stream, whatever the
// create answered. The server answers a create of an identical stream with
// success and of a different one with "already in use" (standalone, it
// refuses replicas it cannot place): either way the caller then checks what
// is there, so that a bucket another node made with other settings is used
// if it keeps the guarantees and named if not. In a cluster, a bucket
// created by a concurrent node can be reported before its stream answers;
// open retries for a few seconds, within ctx.
func (l *Ledger) createOrFind(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	deadline := time.Now().Add(openRetryWindow)
	// Jittered, so that nodes started together do not ask together.
	bo := retry.Backoff{Min: 20 * time.Millisecond, Max: 500 * time.Millisecond}
	for {
		var createErr error
		if !l.noCreate {
			_, createErr = l.js.CreateStream(ctx, cfg)
		}
		stream, err := l.js.Stream(ctx, cfg.Name)
		if err == nil {
			return stream, nil
		}
		if l.noCreate && errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("look up: %w (the admin role creates it: tpnats setup, docs/NATS-SECURITY.md)", err)
		}
		// Not found yet, or a request that timed out while the cluster was
		// busy placing the stream: both pass once the stream answers.
		transient := errors.Is(err, jetstream.ErrStreamNotFound) ||
			(errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) ||
			errors.Is(err, nats.ErrNoResponders)
		if !transient || time.Now().After(deadline) {
			if createErr != nil {
				return nil, fmt.Errorf("create: %w", createErr)
			}
			return nil, fmt.Errorf("look up: %w", err)
		}
		l.log.Debug("replay ledger bucket not visible yet, retrying", "bucket", l.bucket, "create_error", createErr)
		if !retry.Sleep(ctx, bo.Next()) {
			return nil, fmt.Errorf("create: %w", context.Cause(ctx))
		}
	}
}

// checkStream reports why an existing bucket's stream cannot hold the
// ledger, or nil.
func checkStream(sc jetstream.StreamConfig, replicas int, maxAge time.Duration) error {
	var errs []error
	if sc.Replicas != replicas {
		errs = append(errs, fmt.Errorf("exists with %d replicas, want %d (--ledger-replicas)", sc.Replicas, replicas))
	}
	if sc.MaxMsgsPerSubject != 1 {
		errs = append(errs, fmt.Errorf("exists with history %d, want 1", sc.MaxMsgsPerSubject))
	}
	if !sc.AllowMsgTTL {
		errs = append(errs, errors.New("exists without per-key TTLs"))
	}
	if sc.MaxAge != 0 && sc.MaxAge < maxAge {
		// JetStream drops a key at the bucket's max age whatever its TTL:
		// a passport could then be replayed while still valid.
		errs = append(errs, fmt.Errorf("exists with max age %v, shorter than the %v passports need", sc.MaxAge, maxAge))
	}
	if sc.Mirror != nil || len(sc.Sources) > 0 {
		errs = append(errs, errors.New("exists as a mirror or with sources"))
	}
	return errors.Join(errs...)
}

// Ping reports whether the bucket answers: its stream's leader returns the
// stream's state within the ledger's timeout, and it is the stream New found,
// not one deleted since (an error) or recreated (an error: the consumed keys
// are gone, so replays would pass; the node stays unready until an operator
// restarts it). It is the readiness check of a node (SPEC §10.2), and
// refreshes the live-key gauge as a side effect.
func (l *Ledger) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	info, err := l.stream.Info(ctx)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		err = fmt.Errorf("ledger: bucket %s: stream %s is gone: %w", l.bucket, l.acks.stream, err)
		l.recordIntegrity(ctx, kindMissing, err)
		return err
	}
	if err != nil {
		return fmt.Errorf("ledger: ping bucket %s: %w", l.bucket, err)
	}
	if !info.Created.Equal(l.created) {
		err := fmt.Errorf("ledger: bucket %s: stream %s was recreated at %s (found created at %s): its consumed keys are gone",
			l.bucket, l.acks.stream, info.Created.UTC().Format(time.RFC3339), l.created.UTC().Format(time.RFC3339))
		l.recordIntegrity(ctx, kindRecreated, err)
		return err
	}
	l.metrics.storeLiveKeys(info.State.Msgs)
	return nil
}

// Close unregisters the ledger's metric callbacks and its subscription to
// the stream's leader elections. The ledger owns no connection and no
// goroutine; Close is only needed when a ledger is replaced during the life
// of a connection or a MeterProvider.
func (l *Ledger) Close() error {
	return errors.Join(l.unwatchElections(), l.metrics.close())
}

// StreamConfig is the stream behind a ledger bucket: KV_<bucket> on
// $KV.<bucket>.> (NATS ADR-8, so KV tools read it), one message per key,
// per-key TTLs with maxAge as the backstop, file storage.
//
// It is not made with nats.go's CreateKeyValue, which cannot lock it down:
// KV buckets allow roll-ups and purges, and per-key TTLs come there only
// with delete markers, which the server refuses to combine with deny_purge.
// Whoever may purge a key or roll it up can replay its jti (issue 12). So
// the stream denies message deletes, purges and roll-ups, has no markers (a
// key expires by its TTL alone), and refuses a second message on a key
// (discard new per subject): a key once written cannot be replaced, even by
// a publish without the create-only header. Deny flags can never be turned
// off again, even by admin.
func StreamConfig(bucket string, replicas int, maxAge time.Duration, placement *jetstream.Placement) jetstream.StreamConfig {
	if replicas == 0 {
		replicas = 1
	}
	return jetstream.StreamConfig{
		Name:                 kvStreamPrefix + bucket,
		Description:          "tpcluster replay ledger (SPEC §7)",
		Subjects:             []string{"$KV." + bucket + ".>"},
		Storage:              jetstream.FileStorage,
		Replicas:             replicas,
		Placement:            placement,
		Retention:            jetstream.LimitsPolicy,
		MaxMsgsPerSubject:    1,
		MaxMsgs:              -1,
		MaxBytes:             -1,
		MaxAge:               maxAge,
		MaxConsumers:         -1,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		AllowMsgTTL:          true,
		AllowDirect:          true,
		DenyDelete:           true,
		DenyPurge:            true,
		AllowRollup:          false,
		// No duplicate window: SPEC §7 sends no Nats-Msg-Id; the smallest
		// the server takes keeps no id anyway.
		Duplicates: 100 * time.Millisecond,
	}
}

func validBucket(b string) bool {
	for _, c := range []byte(b) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return b != ""
}
