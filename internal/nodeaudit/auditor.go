package nodeaudit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/bundlekv"
	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/proxy"
	"github.com/tpcluster/tpcluster/internal/reason"
)

// Config configures an Auditor.
type Config struct {
	// Spool is the node's spool; its Logger, if nil, becomes Logger.
	Spool audit.SpoolConfig
	// Stream is the audit stream the publisher ensures and sends to.
	Stream audit.StreamConfig
	// Window bounds the publishes in flight (audit.PublisherConfig).
	Window int
	// SignKey and CheckpointInterval: the node's audit key and how often
	// it checkpoints its chain (audit.PublisherConfig). A nil key sends
	// events unsigned.
	SignKey            ed25519.PrivateKey
	CheckpointInterval time.Duration
	// Conn reaches NATS. Required.
	Conn *nats.Conn
	// Logger receives lifecycle and failure logs. If nil, discarded.
	Logger *slog.Logger
}

// Auditor appends a node's events to its spool and sends the spool to the
// audit stream. Open it, Start it once, and end it with Shutdown (or Close
// if it was never started). Its methods are safe for concurrent use.
type Auditor struct {
	spool *audit.Spool
	pub   *audit.Publisher
	log   *slog.Logger

	stop func()         // ends the publisher; set by Start
	wg   sync.WaitGroup // the publisher

	mu         sync.Mutex
	lastTrust  string // guarded by mu; SHA-256 of the last applied trust material (file mode)
	lastPolicy string // guarded by mu; of the last applied policy bundle
}

// Open opens the spool (recovering its chain) and builds the publisher.
// Nothing is sent until Start.
func Open(cfg Config) (*Auditor, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Spool.Logger == nil {
		cfg.Spool.Logger = log
	}
	spool, err := audit.OpenSpool(cfg.Spool)
	if err != nil {
		return nil, err
	}
	if n := spool.Pending(); n > 0 {
		log.Warn("audit spool holds unpublished events from the last run; sending them", "pending", n, "spool_bytes", spool.Bytes())
	}
	pub, err := audit.NewPublisher(audit.PublisherConfig{
		Spool:              spool,
		Conn:               cfg.Conn,
		Stream:             cfg.Stream,
		Window:             cfg.Window,
		SignKey:            cfg.SignKey,
		CheckpointInterval: cfg.CheckpointInterval,
		Logger:             log,
		MeterProvider:      cfg.Spool.MeterProvider,
	})
	if err != nil {
		spool.Close()
		return nil, err
	}
	return &Auditor{spool: spool, pub: pub, log: log}, nil
}

// Start runs the publisher until Shutdown: it creates or checks the stream
// (retried with back-off, since a node may start before NATS does; a
// refusal is logged as an error and counted, see audit.Publisher), then
// sends the spool. Decisions never wait for it. ctx's values are kept; its
// cancellation is not (Shutdown flushes first).
func (a *Auditor) Start(ctx context.Context) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.stop = cancel
	a.wg.Go(func() { _ = a.pub.Run(ctx) })
}

// CheckStream is the node's "audit_stream" readiness check: nil once the
// publisher has created or checked the audit stream and no publish has
// found it missing since, else the NATS error (audit.Publisher.StreamErr).
// A node whose stream the servers refuse is not ready: its spool can only
// fill, and then it denies everything audit_unavailable.
func (a *Auditor) CheckStream(context.Context) error { return a.pub.StreamErr() }

// Shutdown flushes the spool to NATS within timeout (STYLE §6: after the
// HTTP drain and the bundle watcher), then stops the publisher and closes
// the spool with an fsync: what did not reach NATS is sent at the next
// start.
func (a *Auditor) Shutdown(ctx context.Context, timeout time.Duration) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := a.pub.Flush(fctx); err != nil {
		a.log.Warn("audit flush incomplete; the rest stays in the spool", "err", err, "pending", a.spool.Pending())
	}
	a.Close()
}

// Close stops the publisher, if started, without a flush, and closes the
// spool with an fsync. A second Close does nothing more.
func (a *Auditor) Close() {
	if a.stop != nil {
		a.stop()
	}
	a.wg.Wait()
	if err := a.spool.Close(); err != nil {
		a.log.Error("audit spool close", "err", err)
	}
}

// Room reports whether the spool takes one more event: core.Config.AuditRoom
// (SPEC §6 step 18a).
func (a *Auditor) Room() bool { return a.spool.Room() }

// Pending is the number of events not yet acknowledged by the stream.
func (a *Auditor) Pending() uint64 { return a.spool.Pending() }

// CheckBacklog returns the node's "audit_spool" readiness check: an error
// while the spool is broken (a failed fsync; it says why, and turns nil once
// the spool has repaired itself) or has no room for a decision's event
// (every request would be denied audit_unavailable), or while more than
// maxPending events await the stream's acknowledgement (the audit path is
// down or far behind). It reads the spool's state and never waits on a
// disk.
func (a *Auditor) CheckBacklog(maxPending int64) func(context.Context) error {
	return func(context.Context) error {
		if err := a.spool.Broken(); err != nil {
			// The spool repairs itself in the background (a new segment
			// once the disk takes an fsync again).
			return fmt.Errorf("audit spool broken, repairing: decisions are denied audit_unavailable: %w", err)
		}
		if !a.spool.Room() {
			return errors.New("audit spool full or failing: decisions are denied audit_unavailable")
		}
		if p := a.spool.Pending(); p > uint64(max(maxPending, 0)) {
			return fmt.Errorf("%d audit events await the stream's acknowledgement, above %d (--ready-max-audit-pending)", p, maxPending)
		}
		return nil
	}
}

// Record is proxy.Config.Record: the decision's event, appended before the
// response is written. An error makes the proxy deny audit_unavailable.
func (a *Auditor) Record(ctx context.Context, rec *proxy.Record) error {
	return a.spool.Append(ctx, DecisionEvent(rec))
}

// bundleEvent appends a bundle event. A failure cannot fail a request
// closed; the spool counts it and it is logged.
func (a *Auditor) bundleEvent(e *audit.Event) {
	// Bundle callbacks have no request context; the append does not block.
	if err := a.spool.Append(context.Background(), e); err != nil {
		a.log.Error("bundle audit event not recorded", "reason_code", e.ReasonCode, "bundle_kind", e.BundleKind, "err", err)
	}
}

// OnFileApply is bundlefile.Config.OnApply: an event per document that
// changed in the applied pair.
func (a *Auditor) OnFileApply(s *core.Snapshot) {
	a.mu.Lock()
	trust := s.Trust.SHA256 != a.lastTrust
	pol := s.Policy.SHA256 != a.lastPolicy
	a.lastTrust, a.lastPolicy = s.Trust.SHA256, s.Policy.SHA256
	a.mu.Unlock()
	if trust {
		a.bundleEvent(BundleEvent(reason.BundleApplied, string(bundlekv.KindTrustMaterial), s.Trust.Sequence, s.Trust.SHA256, s, nil))
	}
	if pol {
		a.bundleEvent(BundleEvent(reason.BundleApplied, string(bundlekv.KindPolicyBundle), s.Policy.Sequence, s.Policy.SHA256, s, nil))
	}
}

// OnFileReject is bundlefile.Config.OnReject.
func (a *Auditor) OnFileReject(kind string, err error) {
	// "trust material", "policy bundle": the bundlekv spelling.
	a.bundleEvent(BundleEvent(reason.BundleRejected, strings.ReplaceAll(kind, " ", "_"), -1, "", nil, err))
}

// OnKVApply is bundlekv.WatcherConfig.OnApply.
func (a *Auditor) OnKVApply(ap bundlekv.Applied) {
	a.bundleEvent(BundleEvent(reason.BundleApplied, string(ap.Kind), ap.Sequence, ap.SHA256, ap.Snapshot, nil))
}

// OnKVReject is bundlekv.WatcherConfig.OnReject.
func (a *Auditor) OnKVReject(r bundlekv.Rejection) {
	err := r.Err
	if err == nil {
		err = errors.New("refused")
	}
	a.bundleEvent(BundleEvent(reason.BundleRejected, string(r.Kind), r.Sequence, r.SHA256, nil, err))
}
