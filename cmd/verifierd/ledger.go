package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/retry"
	"github.com/tpcluster/tpcluster/internal/telemetry"
)

// openLedger opens the node's replay ledger bucket. Nodes may start before
// their NATS cluster has a JetStream leader, so it retries with a jittered
// back-off until it succeeds or ctx ends.
func openLedger(ctx context.Context, js jetstream.JetStream, cfg *Config, nodeID string, log *slog.Logger, tel *telemetry.Providers) (ledger.Replay, error) {
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
