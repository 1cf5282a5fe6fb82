package ledger_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/ledger"
)

var _ ledger.Replay = (*ledger.Sharded)(nil)

func TestShardBucket(t *testing.T) {
	for _, tc := range []struct {
		base string
		i, n int
		want string
	}{
		{"", 0, 1, ledger.DefaultBucket},
		{"R", 0, 1, "R"},
		{"R", 0, 3, "R_s0"},
		{"R", 2, 3, "R_s2"},
		{"", 1, 2, ledger.DefaultBucket + "_s1"},
	} {
		if got := ledger.ShardBucket(tc.base, tc.i, tc.n); got != tc.want {
			t.Errorf("ShardBucket(%q, %d, %d) = %q, want %q", tc.base, tc.i, tc.n, got, tc.want)
		}
	}
}

func TestShardOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  core.LedgerKey
		n    int
		want int
	}{
		// The top 64 bits are 0x0000000000000005: 5 mod 3.
		{"top bits pick", core.LedgerKey("0000000000000005" + strings.Repeat("f", 48)), 3, 2},
		// The low 192 bits play no part.
		{"low bits ignored", core.LedgerKey("0000000000000005" + strings.Repeat("0", 48)), 3, 2},
		{"one shard", key("a"), 1, 0},
		{"malformed", core.LedgerKey("zz"), 3, 0},
		{"not hex", core.LedgerKey(strings.Repeat("g", 64)), 3, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ledger.ShardOf(tc.key, tc.n); got != tc.want {
				t.Errorf("ShardOf(%s, %d) = %d, want %d", tc.key, tc.n, got, tc.want)
			}
		})
	}
	// Real keys spread evenly: each of 3 shards gets a third of 3000 keys,
	// give or take far more than chance allows (σ ≈ 26).
	counts := make([]int, 3)
	for i := range 3000 {
		counts[ledger.ShardOf(key(fmt.Sprintf("jti-%d", i)), 3)]++
	}
	t.Logf("3000 keys over 3 shards: %v", counts)
	for s, c := range counts {
		if c < 850 || c > 1150 {
			t.Errorf("shard %d holds %d of 3000 keys, want about 1000 (all: %v)", s, c, counts)
		}
	}
}

func TestNewShardedRefuses(t *testing.T) {
	js := singleNode(t)
	for _, tc := range []struct {
		name           string
		shards, prev   int
		wantErrContain string
	}{
		{"too many shards", ledger.MaxShards + 1, 0, "shards 65: must be 1 to 64"},
		{"negative previous", 2, -1, "previous shards -1"},
		{"previous equals shards", 3, 3, "the same as shards"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ledger.NewSharded(t.Context(), ledger.ShardedConfig{
				Config: ledger.Config{JetStream: js, MaxAge: testMaxAge}, Shards: tc.shards, PreviousShards: tc.prev,
			})
			if err == nil {
				s.Close()
				t.Fatalf("NewSharded(%d, previous %d) = nil error", tc.shards, tc.prev)
			}
			if !strings.Contains(err.Error(), tc.wantErrContain) {
				t.Errorf("NewSharded(%d, previous %d) = %q, want it to contain %q", tc.shards, tc.prev, err, tc.wantErrContain)
			}
		})
	}
}

// newSharded builds a Sharded ledger from cfg, filling in MaxAge and NodeID.
func newSharded(t testing.TB, cfg ledger.ShardedConfig) *ledger.Sharded {
	t.Helper()
	if cfg.MaxAge == 0 {
		cfg.MaxAge = testMaxAge
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "node-1"
	}
	s, err := ledger.NewSharded(t.Context(), cfg)
	if err != nil {
		t.Fatalf("ledger.NewSharded: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestShardedKeyInItsShard: a consume creates its key in the one bucket
// ShardOf names, and nowhere else; the same key again is a replay.
func TestShardedKeyInItsShard(t *testing.T) {
	js := singleNode(t)
	s := newSharded(t, ledger.ShardedConfig{Config: ledger.Config{JetStream: js, Bucket: "RP"}, Shards: 3})
	if got, want := s.Buckets(), []string{"RP_s0", "RP_s1", "RP_s2"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Buckets() = %v, want %v", got, want)
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping = %v", err)
	}
	perShard := make([]int, 3)
	for i := range 30 {
		k := key(fmt.Sprintf("placed-%d", i))
		if err := s.Consume(t.Context(), k, time.Minute, core.LedgerEntry{}); err != nil {
			t.Fatalf("Consume(%s) = %v", k, err)
		}
		if err := s.Consume(t.Context(), k, time.Minute, core.LedgerEntry{}); sentinel(t, err) != core.ErrReplay {
			t.Fatalf("second Consume(%s) = %v, want %v", k, err, core.ErrReplay)
		}
		want := ledger.ShardOf(k, 3)
		perShard[want]++
		for i := range 3 {
			kv, err := js.KeyValue(t.Context(), ledger.ShardBucket("RP", i, 3))
			if err != nil {
				t.Fatal(err)
			}
			_, err = kv.Get(t.Context(), string(k))
			switch {
			case i == want && err != nil:
				t.Errorf("key %s not in its shard %d: %v", k, i, err)
			case i != want && err != jetstream.ErrKeyNotFound:
				t.Errorf("key %s of shard %d found in shard %d (err %v)", k, want, i, err)
			}
		}
	}
	t.Logf("30 keys per shard: %v", perShard)
}

// TestShardedTransitionOverlap: going from 2 to 3 shards, base_s0 belongs
// to both layouts; a key whose shard is 0 in both is written there once,
// and is created, not refused by its own first write.
func TestShardedTransitionOverlap(t *testing.T) {
	js := singleNode(t)
	tr := newSharded(t, ledger.ShardedConfig{Config: ledger.Config{JetStream: js, Bucket: "RP"}, Shards: 3, PreviousShards: 2})
	old := newSharded(t, ledger.ShardedConfig{Config: ledger.Config{JetStream: js, Bucket: "RP", NodeID: "old"}, Shards: 2})
	if got, want := tr.Buckets(), []string{"RP_s0", "RP_s1", "RP_s2"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Buckets() = %v, want %v", got, want)
	}
	var both, split int
	for i := 0; both == 0 || split == 0; i++ {
		k := key(fmt.Sprintf("overlap-%d", i))
		if err := tr.Consume(t.Context(), k, time.Minute, core.LedgerEntry{}); err != nil {
			t.Fatalf("transition Consume(%s) (shard %d of 3, %d of 2) = %v, want nil", k, ledger.ShardOf(k, 3), ledger.ShardOf(k, 2), err)
		}
		if err := old.Consume(t.Context(), k, time.Minute, core.LedgerEntry{}); sentinel(t, err) != core.ErrReplay {
			t.Fatalf("old-layout Consume(%s) after the transition node's = %v, want %v", k, err, core.ErrReplay)
		}
		if ledger.ShardBucket("RP", ledger.ShardOf(k, 3), 3) == ledger.ShardBucket("RP", ledger.ShardOf(k, 2), 2) {
			both++
		} else {
			split++
		}
	}
}
