package ledger

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tpcluster/tpcluster/internal/core"
)

// MaxShards bounds --ledger-shards: each shard is a stream with its own Raft
// group, and past a few per server they cost more than they spread.
const MaxShards = 64

// ShardBucket names shard i of a layout of n shards on base: base itself
// when n is 1, so that one shard is the unsharded ledger's bucket, and
// base + "_s" + i otherwise (docs/LEDGER-SHARDS.md). NATS permissions for
// the verifier role name these buckets.
func ShardBucket(base string, i, n int) string {
	if base == "" {
		base = DefaultBucket
	}
	if n <= 1 {
		return base
	}
	return fmt.Sprintf("%s_s%d", base, i)
}

// ShardOf returns the shard of key in a layout of n shards: the key's first
// 16 hex digits, the top 64 bits of its SHA-256 read big-endian, modulo n.
// The key is already a uniform hash (core.NewLedgerKey), so the shards
// fill evenly, and the same key always lands in the same shard of a given
// n: exactly-once needs nothing more. A key that is not 64 hex digits gets
// shard 0, whose Consume refuses it as malformed.
func ShardOf(key core.LedgerKey, n int) int {
	if n <= 1 || len(key) < 16 {
		return 0
	}
	var top [8]byte
	if _, err := hex.Decode(top[:], []byte(key[:16])); err != nil {
		return 0
	}
	return int(binary.BigEndian.Uint64(top[:]) % uint64(n))
}

// ShardedConfig configures a Sharded ledger.
type ShardedConfig struct {
	// Config is the template of every shard: its Bucket is the base name
	// (if empty, DefaultBucket), each shard's bucket is ShardBucket.
	Config
	// Shards is the number of buckets keys are spread over
	// (--ledger-shards). If zero, 1.
	Shards int
	// PreviousShards, if not zero, is the layout the fleet is leaving
	// (--ledger-shards-previous): every Consume also writes create-only
	// into it, and allows only if both writes created their key
	// (docs/LEDGER-SHARDS.md proves why this keeps exactly-once across a
	// mixed fleet). It must differ from Shards. If zero, no transition.
	PreviousShards int
}

// Sharded is the replay ledger spread over several KV buckets, each with
// its own stream and Raft leader, so that consumes are not bounded by one
// server. A key's bucket is ShardBucket(base, ShardOf(key, n), n).
// It implements core.Ledger and Replay, is safe for concurrent use and
// starts no goroutines.
type Sharded struct {
	current  []*Ledger // the layout of Shards
	previous []*Ledger // the layout of PreviousShards; nil outside a transition
	all      []*Ledger // every distinct bucket, each once
}

// NewSharded opens every shard bucket of both layouts, creating those that
// do not exist, with New's checks. A bucket that both layouts name (base_s0
// when going from 2 to 3 shards) is opened once. ctx bounds the whole call.
func NewSharded(ctx context.Context, cfg ShardedConfig) (*Sharded, error) {
	if cfg.Shards == 0 {
		cfg.Shards = 1
	}
	if cfg.Shards < 1 || cfg.Shards > MaxShards {
		return nil, fmt.Errorf("ledger: config: shards %d: must be 1 to %d", cfg.Shards, MaxShards)
	}
	if cfg.PreviousShards < 0 || cfg.PreviousShards > MaxShards {
		return nil, fmt.Errorf("ledger: config: previous shards %d: must be 0 (no transition) to %d", cfg.PreviousShards, MaxShards)
	}
	if cfg.PreviousShards == cfg.Shards {
		return nil, fmt.Errorf("ledger: config: previous shards %d: the same as shards, no transition to make", cfg.PreviousShards)
	}
	s := &Sharded{}
	byName := map[string]*Ledger{}
	layout := func(n int) ([]*Ledger, error) {
		out := make([]*Ledger, n)
		for i := range n {
			c := cfg.Config
			c.Bucket = ShardBucket(cfg.Bucket, i, n)
			if l, ok := byName[c.Bucket]; ok {
				out[i] = l
				continue
			}
			l, err := New(ctx, c)
			if err != nil {
				return nil, err
			}
			byName[c.Bucket] = l
			s.all = append(s.all, l)
			out[i] = l
		}
		return out, nil
	}
	var err error
	if s.current, err = layout(cfg.Shards); err == nil && cfg.PreviousShards > 0 {
		s.previous, err = layout(cfg.PreviousShards)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Consume implements core.Ledger: one create-only write into the key's
// shard. During a transition it first writes into the key's shard of the
// previous layout and then into the current one (once, if both name the
// same bucket), and returns nil only if both writes created the key. The
// first write that fails decides the error (ErrReplay or
// ErrLedgerUnavailable); a key created in the previous layout whose
// current write fails stays consumed there, which only ever denies (SPEC
// §7: never allow on doubt).
func (s *Sharded) Consume(ctx context.Context, key core.LedgerKey, ttl time.Duration, e core.LedgerEntry) error {
	cur := s.current[ShardOf(key, len(s.current))]
	if s.previous == nil {
		return cur.Consume(ctx, key, ttl, e)
	}
	prev := s.previous[ShardOf(key, len(s.previous))]
	if err := prev.Consume(ctx, key, ttl, e); err != nil {
		return err
	}
	if prev == cur {
		return nil
	}
	return cur.Consume(ctx, key, ttl, e)
}

// Ping reports whether every shard of both layouts answers: a node that
// cannot reach one shard would deny a share of its requests
// replay_ledger_unavailable, so it is not ready.
func (s *Sharded) Ping(ctx context.Context) error {
	var errs []error
	for _, l := range s.all {
		errs = append(errs, l.Ping(ctx))
	}
	return errors.Join(errs...)
}

// Probe writes the node's probe key into every shard of both layouts at
// once, so it is bounded by one write's time: a shard without a quorum
// would deny its share of requests, so the node is not ready.
func (s *Sharded) Probe(ctx context.Context) error {
	errs := make([]error, len(s.all))
	var wg sync.WaitGroup
	for i, l := range s.all {
		wg.Go(func() { errs[i] = l.Probe(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Buckets returns the name of every bucket the ledger writes, current
// layout first.
func (s *Sharded) Buckets() []string {
	out := make([]string, len(s.all))
	for i, l := range s.all {
		out[i] = l.bucket
	}
	return out
}

// Close unregisters every shard's metric callbacks.
func (s *Sharded) Close() error {
	var errs []error
	for _, l := range s.all {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}
