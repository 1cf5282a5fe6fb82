package main

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/bundlekv"
	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/proxy"
	"github.com/tpcluster/tpcluster/internal/reason"
	"github.com/tpcluster/tpcluster/internal/retry"
	"github.com/tpcluster/tpcluster/internal/telemetry"
)

// auditor maps decisions and bundle changes to audit events (SPEC §9,
// §8.2) and owns the spool and its publisher.
type auditor struct {
	spool  *audit.Spool
	pub    *audit.Publisher
	stream audit.StreamConfig
	js     jetstream.JetStream
	log    *slog.Logger

	stop func()         // ends the publisher
	wg   sync.WaitGroup // the publisher

	mu         sync.Mutex
	lastTrust  string // guarded by mu; SHA-256 of the last applied trust material (file mode)
	lastPolicy string // guarded by mu; of the last applied policy bundle
}

// openAuditor opens the spool (recovering the chain) and builds the
// publisher. Nothing is sent until start.
func openAuditor(cfg *Config, nc *nats.Conn, js jetstream.JetStream, nodeID string, log *slog.Logger, tel *telemetry.Providers) (*auditor, error) {
	log = log.With("component", "audit")
	dir := cfg.AuditSpoolDir
	if dir == "" {
		dir = filepath.Join(cfg.DataDir, "audit")
	}
	spool, err := audit.OpenSpool(audit.SpoolConfig{
		Dir:           dir,
		NodeID:        nodeID,
		Region:        cfg.Region,
		MaxBytes:      cfg.AuditSpoolMaxBytes,
		SyncInterval:  cfg.AuditSyncInterval,
		Logger:        log,
		MeterProvider: tel.Meter,
	})
	if err != nil {
		return nil, err
	}
	if n := spool.Pending(); n > 0 {
		log.Warn("audit spool holds unpublished events from the last run; sending them", "pending", n, "spool_bytes", spool.Bytes())
	}
	stream := audit.StreamConfig{
		Name:     cfg.AuditStream,
		Replicas: cfg.AuditReplicas,
		MaxAge:   cfg.AuditMaxAge,
		MaxBytes: cfg.AuditMaxBytes,
	}
	if cfg.Region != "" {
		// A region's events go to its own stream, placed in its cluster;
		// `tpaudit gather` sources every region's stream into the global
		// one (docs/MULTI-REGION.md).
		stream.Name = audit.RegionStream(cfg.AuditStream, cfg.Region)
		stream.Region = cfg.Region
		if cfg.NATSURL != "" {
			stream.Cluster = cfg.Region
		}
	}
	pub, err := audit.NewPublisher(audit.PublisherConfig{
		Spool:         spool,
		Conn:          nc,
		Stream:        stream,
		Window:        cfg.AuditWindow,
		Logger:        log,
		MeterProvider: tel.Meter,
	})
	if err != nil {
		spool.Close()
		return nil, err
	}
	return &auditor{spool: spool, pub: pub, stream: stream, js: js, log: log}, nil
}

// start runs the publisher until stop: first the stream is created or
// checked (retried with back-off, since a node may start before NATS does),
// then the spool is sent. Decisions never wait for it.
func (a *auditor) start(parent context.Context) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	a.stop = cancel
	a.wg.Go(func() {
		bo := retry.Backoff{Min: 250 * time.Millisecond, Max: 5 * time.Second}
		for {
			ectx, c := context.WithTimeout(ctx, 10*time.Second)
			err := audit.EnsureStream(ectx, a.js, a.stream, a.log)
			c()
			if err == nil {
				break
			}
			wait := bo.Next()
			a.log.Warn("audit stream not ready; events stay in the spool", "err", err, "retry_in", wait)
			if !retry.Sleep(ctx, wait) {
				return
			}
		}
		_ = a.pub.Run(ctx)
	})
}

// shutdown flushes the spool to NATS within timeout (STYLE §6: after the
// HTTP drain and the bundle watcher), then stops the publisher and closes
// the spool with an fsync: what did not reach NATS is sent at the next
// start.
func (a *auditor) shutdown(ctx context.Context, timeout time.Duration) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := a.pub.Flush(fctx); err != nil {
		a.log.Warn("audit flush incomplete; the rest stays in the spool", "err", err, "pending", a.spool.Pending())
	}
	if a.stop != nil {
		a.stop()
	}
	a.wg.Wait()
	if err := a.spool.Close(); err != nil {
		a.log.Error("audit spool close", "err", err)
	}
}

// record is proxy.Config.Record: the decision's event, appended before the
// response is written. An error makes the proxy deny audit_unavailable.
func (a *auditor) record(ctx context.Context, rec *proxy.Record) error {
	d := rec.Decision
	e := &audit.Event{
		Component:          "verifier",
		Outcome:            d.Outcome.String(),
		Accepted:           d.Allowed(),
		ReasonCode:         d.Reason,
		RequestID:          rec.RequestID,
		RouteID:            d.RouteID,
		Audience:           d.Audience,
		Issuer:             d.Issuer,
		Subject:            d.Subject,
		JTI:                d.JTI,
		KeyBinding:         d.KeyBinding,
		RequiredKeyBinding: d.RequiredKeyBinding,
		TranscriptSHA256:   d.TranscriptSHA256,
		PolicyID:           d.PolicySHA256,
		PolicyVersion:      d.PolicySequence,
		Method:             rec.Method,
		Path:               rec.Path,
		Status:             d.Status,
		LatencyUS:          rec.Latency.Microseconds(),
		BundleSequence:     d.PolicySequence,
		TraceID:            rec.TraceID,
	}
	if d.Err != nil {
		e.DetailReason = d.Err.Error()
	}
	return a.spool.Append(ctx, e)
}

// bundleEvent appends a bundle event (SPEC §8.2). A failure cannot fail a
// request closed; it is counted by the spool and logged.
func (a *auditor) bundleEvent(code reason.Code, kind string, seq int64, sha string, pol *core.Snapshot, detail error) {
	e := &audit.Event{
		Component:      "verifier",
		Outcome:        audit.OutcomeBundle,
		Accepted:       code == reason.BundleApplied,
		ReasonCode:     code,
		BundleKind:     kind,
		BundleSequence: seq,
		BundleSHA256:   sha,
	}
	if pol != nil && pol.Policy != nil {
		e.PolicyID, e.PolicyVersion = pol.Policy.SHA256, pol.Policy.Sequence
	}
	if detail != nil {
		e.DetailReason = detail.Error()
	}
	// Bundle callbacks have no request context; the append does not block.
	if err := a.spool.Append(context.Background(), e); err != nil {
		a.log.Error("bundle audit event not recorded", "reason_code", code, "bundle_kind", kind, "err", err)
	}
}

// onFileApply is bundlefile.Config.OnApply: an event per document that
// changed in the applied pair.
func (a *auditor) onFileApply(s *core.Snapshot) {
	a.mu.Lock()
	trust := s.Trust.SHA256 != a.lastTrust
	pol := s.Policy.SHA256 != a.lastPolicy
	a.lastTrust, a.lastPolicy = s.Trust.SHA256, s.Policy.SHA256
	a.mu.Unlock()
	if trust {
		a.bundleEvent(reason.BundleApplied, string(bundlekv.KindTrustMaterial), s.Trust.Sequence, s.Trust.SHA256, s, nil)
	}
	if pol {
		a.bundleEvent(reason.BundleApplied, string(bundlekv.KindPolicyBundle), s.Policy.Sequence, s.Policy.SHA256, s, nil)
	}
}

// onFileReject is bundlefile.Config.OnReject.
func (a *auditor) onFileReject(kind string, err error) {
	// "trust material", "policy bundle": the bundlekv spelling.
	a.bundleEvent(reason.BundleRejected, strings.ReplaceAll(kind, " ", "_"), -1, "", nil, err)
}

// onKVApply and onKVReject are the bundlekv.WatcherConfig callbacks.
func (a *auditor) onKVApply(ap bundlekv.Applied) {
	a.bundleEvent(reason.BundleApplied, string(ap.Kind), ap.Sequence, ap.SHA256, (*core.Snapshot)(ap.Snapshot), nil)
}

func (a *auditor) onKVReject(r bundlekv.Rejection) {
	err := r.Err
	if err == nil {
		err = errors.New("refused")
	}
	a.bundleEvent(reason.BundleRejected, string(r.Kind), r.Sequence, r.SHA256, nil, err)
}
