package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/natsauth"
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
		MaxAge:        cfg.ledgerMaxAge(),
		Timeout:       cfg.LedgerTimeout,
		NodeID:        nodeID,
		Logger:        log.With("component", "ledger"),
		MeterProvider: tel.Meter,
		// A role credential may not create streams (issue 12).
		NoCreate: cfg.locked(),
	}
	base := lc
	if cfg.Region != "" {
		// One bucket per region, placed in the region's NATS cluster, which
		// a supercluster names after the region (docs/MULTI-REGION.md).
		lc.Bucket = cfg.ledgerBucket()
		if cfg.NATSURL != "" {
			lc.Cluster = cfg.Region
		}
	}
	open := func(ctx context.Context) (ledger.Replay, error) {
		if cfg.LedgerShards > 1 || cfg.LedgerShardsPrev > 0 {
			return openSharded(ctx, lc, cfg, log) // Validate refused --region with shards
		}
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		led, err := ledger.New(octx, lc)
		switch {
		case err != nil:
			return nil, err
		case cfg.Region != "":
			return ledger.NewRegional(led, base), nil
		}
		return led, nil
	}
	bo := retry.Backoff{Min: 250 * time.Millisecond, Max: 5 * time.Second}
	for {
		led, err := open(ctx)
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

// openSharded opens the shards of --ledger-shards (and of
// --ledger-shards-previous during a reshard) and spreads the shards'
// stream leaders over the servers. A spread that fails is logged, not
// fatal: the ledger is as correct with every leader on one server, only
// slower.
func openSharded(ctx context.Context, lc ledger.Config, cfg *Config, log *slog.Logger) (*ledger.Sharded, error) {
	octx, cancel := context.WithTimeout(ctx, 10*time.Second+time.Duration(cfg.LedgerShards+cfg.LedgerShardsPrev)*time.Second)
	defer cancel()
	led, err := ledger.NewSharded(octx, ledger.ShardedConfig{Config: lc, Shards: cfg.LedgerShards, PreviousShards: cfg.LedgerShardsPrev})
	if err != nil {
		return nil, err
	}
	// A leader step-down is the admin role's (tpnats setup spreads them);
	// with the verifier role the request would only wait and fail.
	if cfg.LedgerReplicas > 1 && !cfg.locked() {
		if err := led.SpreadLeaders(octx); err != nil {
			log.Warn("replay ledger shard leaders not spread", "err", err)
		}
	}
	log.Info("replay ledger sharded", "buckets", led.Buckets(), "shards", cfg.LedgerShards, "shards_previous", cfg.LedgerShardsPrev)
	return led, nil
}

// ledgerBucket is the node's own ledger bucket: its region's with --region.
func (c *Config) ledgerBucket() string {
	if c.Region != "" {
		return ledger.BucketFor(c.LedgerBucket, c.Region)
	}
	return c.LedgerBucket
}

// ledgerMaxAge is the ledger bucket's max age (SPEC §7): the max passport
// lifetime plus twice the clock skew.
func (c *Config) ledgerMaxAge() time.Duration {
	return c.MaxPassportLifetime + 2*c.ClockSkew
}

// natsNames are the streams the credentials the embedded server writes
// give rights to. They are written once, at the first start: a data dir
// whose --ledger-shards changes later needs new credentials
// (docs/NATS-SECURITY.md).
func (c *Config) natsNames() natsauth.Names {
	n := natsauth.Names{LedgerBucket: c.LedgerBucket, AuditStream: c.AuditStream,
		LedgerShards: c.LedgerShards, LedgerShardsPrevious: c.LedgerShardsPrev}
	if c.Region != "" {
		n.Regions = []string{c.Region}
	}
	return n
}
