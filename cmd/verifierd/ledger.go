package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/retry"
	"github.com/tpcluster/tpcluster/internal/telemetry"
)

// nodeLedger is the replay ledger a node decides with: core's contract plus
// the readiness check.
type nodeLedger interface {
	core.Ledger
	Ping(ctx context.Context) error
}

// openLedger opens the node's replay ledger bucket. Nodes may start before
// their NATS cluster has a JetStream leader, so it retries with a jittered
// back-off until it succeeds or ctx ends.
func openLedger(ctx context.Context, js jetstream.JetStream, cfg *Config, nodeID string, log *slog.Logger, tel *telemetry.Providers) (nodeLedger, error) {
	lc := ledger.Config{
		JetStream:     js,
		Bucket:        cfg.LedgerBucket,
		Replicas:      cfg.LedgerReplicas,
		MaxAge:        cfg.MaxPassportLifetime + 2*cfg.ClockSkew,
		Timeout:       cfg.LedgerTimeout,
		NodeID:        nodeID,
		Logger:        log.With("component", "ledger"),
		MeterProvider: tel.Meter,
	}
	base := lc
	if cfg.Region != "" {
		// One bucket per region, placed in the region's NATS cluster, which
		// a supercluster names after the region (docs/MULTI-REGION.md).
		lc.Bucket = ledger.BucketFor(cfg.LedgerBucket, cfg.Region)
		if cfg.NATSURL != "" {
			lc.Cluster = cfg.Region
		}
	}
	bo := retry.Backoff{Min: 250 * time.Millisecond, Max: 5 * time.Second}
	for {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		led, err := ledger.New(octx, lc)
		cancel()
		if err == nil && cfg.Region != "" {
			return ledger.NewRegional(led, base), nil
		}
		if err == nil {
			return led, nil
		}
		wait := bo.Next()
		log.Warn("replay ledger not ready; retrying", "err", err, "retry_in", wait)
		if !retry.Sleep(ctx, wait) {
			return nil, fmt.Errorf("replay ledger: %w", err)
		}
	}
}

// lazyLedger lets a node serve before its replay ledger bucket can be
// opened: in NATS mode a node decides from its cached bundle pair before
// NATS answers (SPEC §8.2), and until the ledger opens every consume fails
// with core.ErrLedgerUnavailable, so requests that pass every other check
// are denied replay_ledger_unavailable, never allowed. Run opens the ledger
// (with openLedger's bounded back-off) and swaps it in.
type lazyLedger struct {
	open func(context.Context) (nodeLedger, error)
	led  atomic.Pointer[ledgerBox]
}

type ledgerBox struct{ nodeLedger }

var errLedgerNotOpen = fmt.Errorf("ledger bucket not open yet: %w", core.ErrLedgerUnavailable)

func (l *lazyLedger) Consume(ctx context.Context, key core.LedgerKey, ttl time.Duration, e core.LedgerEntry) error {
	if b := l.led.Load(); b != nil {
		return b.Consume(ctx, key, ttl, e)
	}
	return errLedgerNotOpen
}

func (l *lazyLedger) Ping(ctx context.Context) error {
	if b := l.led.Load(); b != nil {
		return b.Ping(ctx)
	}
	return errLedgerNotOpen
}

// Run opens the ledger, retrying until ctx is done. It returns nil once the
// ledger is open or ctx is done.
func (l *lazyLedger) Run(ctx context.Context) error {
	led, err := l.open(ctx)
	if err != nil {
		return nil // ctx ended first; openLedger logged every attempt
	}
	l.led.Store(&ledgerBox{led})
	return nil
}
