package natsauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/bundlekv"
	"github.com/tpcluster/tpcluster/internal/ledger"
)

// ErrAuditStream marks a Provision error about the audit stream alone: the
// ledger and the bundle bucket were provisioned (they come first). A node
// can run without its audit stream, spooling (SPEC §9), so a caller may
// report it and go on.
var ErrAuditStream = errors.New("audit stream not provisioned")

// ProvisionConfig is what the admin role creates: the replay bucket, the
// bundle bucket and the audit stream, with the deployment's names and sizes.
type ProvisionConfig struct {
	// LedgerBucket, LedgerReplicas and LedgerMaxAge as verifierd's
	// --ledger-bucket, --ledger-replicas and max passport lifetime plus
	// twice the clock skew. LedgerMaxAge is required.
	LedgerBucket   string
	LedgerReplicas int
	LedgerMaxAge   time.Duration
	// LedgerCluster places a new ledger bucket in a NATS cluster (the
	// region's, docs/MULTI-REGION.md). If empty, the server places it.
	LedgerCluster string
	// LedgerShards and LedgerShardsPrevious, as verifierd's flags: each
	// layout of more than one shard gets its shard buckets
	// (docs/LEDGER-SHARDS.md). If zero, one bucket.
	LedgerShards, LedgerShardsPrevious int
	// BundleBucket and BundleReplicas as bundlepub's --bucket, --replicas.
	BundleBucket   string
	BundleReplicas int
	// Audit is the audit stream (verifierd's --audit-* flags).
	Audit audit.StreamConfig
	// Logger receives what was created or found. If nil, discarded.
	Logger *slog.Logger
}

// Provision creates, with the admin role's js, every stream and bucket the
// other roles only use: the ledger bucket locked (ledger.StreamConfig), the
// bundle bucket, and the audit stream with deny_delete and deny_purge. What
// exists is checked and kept; an audit stream made before issue 12 is
// locked. It is idempotent: run it at every deploy. An error about the
// audit stream alone matches ErrAuditStream.
func Provision(ctx context.Context, js jetstream.JetStream, cfg ProvisionConfig) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.LedgerMaxAge <= 0 {
		return errors.New("natsauth: provision: ledger max age must be positive")
	}
	// Each layout's buckets: one shard is the unsharded bucket itself.
	var buckets []string
	for _, layout := range []int{max(cfg.LedgerShards, 1), cfg.LedgerShardsPrevious} {
		for i := range layout {
			if b := ledger.ShardBucket(cfg.LedgerBucket, i, layout); !slices.Contains(buckets, b) {
				buckets = append(buckets, b)
			}
		}
	}
	for _, b := range buckets {
		led, err := ledger.New(ctx, ledger.Config{
			JetStream: js,
			Bucket:    b,
			Replicas:  cfg.LedgerReplicas,
			MaxAge:    cfg.LedgerMaxAge,
			NodeID:    "admin",
			Logger:    log,
			Cluster:   cfg.LedgerCluster,
		})
		if err != nil {
			return fmt.Errorf("natsauth: provision replay ledger: %w", err)
		}
		led.Close()
	}
	if cfg.LedgerShards > 1 && cfg.LedgerReplicas > 1 {
		// The shards' leaders on as many servers as there are: a
		// step-down is the admin's (the verifier role cannot ask).
		sh, err := ledger.NewSharded(ctx, ledger.ShardedConfig{Config: ledger.Config{
			JetStream: js, Bucket: cfg.LedgerBucket, Replicas: cfg.LedgerReplicas, MaxAge: cfg.LedgerMaxAge,
			NodeID: "admin", Logger: log, NoCreate: true,
		}, Shards: cfg.LedgerShards})
		if err != nil {
			return fmt.Errorf("natsauth: provision replay ledger shards: %w", err)
		}
		if err := sh.SpreadLeaders(ctx); err != nil {
			log.Warn("replay ledger shard leaders not spread", "err", err)
		}
		sh.Close()
	}
	if err := bundlekv.EnsureBucket(ctx, js, cfg.BundleBucket, cfg.BundleReplicas); err != nil {
		return fmt.Errorf("natsauth: provision bundle bucket: %w", err)
	}
	ac := cfg.Audit
	ac.NoCreate = false
	if err := audit.EnsureStream(ctx, js, ac, log); err != nil {
		return fmt.Errorf("natsauth: provision audit stream: %w: %w", ErrAuditStream, err)
	}
	name := ac.Name
	if name == "" {
		name = audit.DefaultStream
	}
	changed, err := audit.LockStream(ctx, js, name)
	if err != nil {
		return fmt.Errorf("natsauth: provision audit stream: %w: %w", ErrAuditStream, err)
	}
	if changed {
		log.Info("audit stream locked: deny_delete and deny_purge set", "stream", name)
	}
	return nil
}
