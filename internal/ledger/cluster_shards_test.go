package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// startShardedNodes starts nodes Sharded ledgers at once, node i connected
// to server i mod 3 of a fresh three-server cluster, each with cfg.
func startShardedNodes(t *testing.T, nodes int, cfg ledger.ShardedConfig) []*ledger.Sharded {
	t.Helper()
	servers := natstest.Cluster(t, 3)
	out := make([]*ledger.Sharded, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		c := cfg
		c.JetStream = natstest.JetStream(t, natstest.Connect(t, servers[i%len(servers)].ClientURL()))
		c.NodeID = fmt.Sprintf("node-%d", i)
		c.MaxAge = testMaxAge
		wg.Go(func() { out[i], errs[i] = ledger.NewSharded(t.Context(), c) }) // SPEC §10.1: all at once
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: NewSharded = %v", i, err)
		}
		t.Cleanup(func() { out[i].Close() })
	}
	return out
}

// waitSpread runs SpreadLeaders until the shards of s have as many
// different leaders as there are shards, and returns them.
func waitSpread(t testing.TB, s *ledger.Sharded) []string {
	t.Helper()
	var leaders []string
	took := testwait.Until(t, 30*time.Second, "shard leaders on different servers", bounded(t, func(ctx context.Context) error {
		var err error
		if leaders, err = s.Leaders(ctx); err != nil {
			return err
		}
		distinct := slices.Compact(slices.Sorted(slices.Values(leaders)))
		if len(distinct) == len(leaders) && !slices.Contains(leaders, "") {
			return nil
		}
		if err := s.SpreadLeaders(ctx); err != nil {
			t.Logf("SpreadLeaders: %v", err)
		}
		return fmt.Errorf("leaders %v", leaders)
	}))
	t.Logf("shard leaders %v after %v", leaders, took)
	// A step-down asked in an earlier round may still be under way: the
	// shards have settled once a fresh key in each is created, and the
	// leaders are still spread afterwards.
	n := len(leaders)
	probe := 0
	settled := testwait.Until(t, 30*time.Second, "a create in every shard under spread leaders", bounded(t, func(ctx context.Context) error {
		for shard := range n {
			k := key(fmt.Sprintf("probe-%d", probe))
			for ; ledger.ShardOf(k, n) != shard; k = key(fmt.Sprintf("probe-%d", probe)) {
				probe++
			}
			probe++
			if err := s.Consume(ctx, k, time.Minute, core.LedgerEntry{}); err != nil {
				return fmt.Errorf("shard %d: %w", shard, err)
			}
		}
		now, err := s.Leaders(ctx)
		if err != nil {
			return err
		}
		if d := slices.Compact(slices.Sorted(slices.Values(now))); len(d) != n || slices.Contains(now, "") {
			s.SpreadLeaders(ctx)
			return fmt.Errorf("leaders moved to %v", now)
		}
		leaders = now
		return nil
	}))
	t.Logf("settled with leaders %v after %v more", leaders, settled)
	return leaders
}

// TestClusterShardsExactlyOnce: three R3 shards on three servers get three
// different leaders, and five nodes racing on every one of 200 keys still
// create each exactly once.
func TestClusterShardsExactlyOnce(t *testing.T) {
	const nodes, keys = 5, 200
	ls := startShardedNodes(t, nodes, ledger.ShardedConfig{Config: ledger.Config{Replicas: 3}, Shards: 3})
	waitSpread(t, ls[0])

	created := make([]int, keys)
	var mu sync.Mutex
	var replays int
	var wg sync.WaitGroup
	start := time.Now()
	for k := range keys {
		for _, l := range ls {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				err := l.Consume(ctx, key(fmt.Sprintf("shard-%d", k)), time.Minute, core.LedgerEntry{})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					created[k]++
				case errors.Is(err, core.ErrReplay) && !errors.Is(err, core.ErrLedgerUnavailable):
					replays++
				default:
					t.Errorf("key %d: Consume = %v, want nil or %v", k, err, core.ErrReplay)
				}
			})
		}
	}
	wg.Wait()
	t.Logf("%d consumes on 3 R3 shards in %v", nodes*keys, time.Since(start))
	for k, n := range created {
		if n != 1 {
			t.Errorf("key %d created %d times, want once", k, n)
		}
	}
	if replays != (nodes-1)*keys {
		t.Errorf("%d replays, want %d", replays, (nodes-1)*keys)
	}
}

// TestClusterShardsMixedFleet is the reshard procedure of
// docs/LEDGER-SHARDS.md on a real cluster: an old-layout node (1 shard), a
// node in transition (3 shards, previous 1) and a new-layout node (3
// shards). Within each pair that the procedure lets run side by side (old
// with transition, transition with new) a jti consumed on one is a replay
// on the other, in both directions, and racing them creates it once.
func TestClusterShardsMixedFleet(t *testing.T) {
	servers := natstest.Cluster(t, 3)
	open := func(i int, shards, prev int) *ledger.Sharded {
		js := natstest.JetStream(t, natstest.Connect(t, servers[i%len(servers)].ClientURL()))
		return newSharded(t, ledger.ShardedConfig{
			Config: ledger.Config{JetStream: js, Replicas: 3, NodeID: fmt.Sprintf("node-%d", i)},
			Shards: shards, PreviousShards: prev,
		})
	}
	old, trans, nu := open(0, 1, 0), open(1, 3, 1), open(2, 3, 0)
	pairs := []struct {
		name   string
		first  *ledger.Sharded
		second *ledger.Sharded
	}{
		{"old then transition", old, trans},
		{"transition then old", trans, old},
		{"transition then new", trans, nu},
		{"new then transition", nu, trans},
	}
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			for i := range 30 {
				k := key(fmt.Sprintf("%s-%d", p.name, i))
				if err := p.first.Consume(t.Context(), k, time.Minute, core.LedgerEntry{}); err != nil {
					t.Fatalf("first Consume(%s) = %v, want nil", k, err)
				}
				if err := p.second.Consume(t.Context(), k, time.Minute, core.LedgerEntry{}); sentinel(t, err) != core.ErrReplay {
					t.Fatalf("second node's Consume(%s) = %v, want %v", k, err, core.ErrReplay)
				}
			}
		})
	}
	t.Run("race", func(t *testing.T) {
		for _, fleet := range [][]*ledger.Sharded{{old, trans}, {trans, nu}} {
			for i := range 50 {
				k := key(fmt.Sprintf("race-%p-%d", fleet[0], i))
				var wg sync.WaitGroup
				errs := make([]error, len(fleet))
				for j, l := range fleet {
					wg.Go(func() { errs[j] = l.Consume(t.Context(), k, time.Minute, core.LedgerEntry{}) })
				}
				wg.Wait()
				var allowed int
				for _, err := range errs {
					if err == nil {
						allowed++
					} else if sentinel(t, err) != core.ErrReplay {
						t.Errorf("Consume(%s) = %v, want nil or %v", k, err, core.ErrReplay)
					}
				}
				if allowed != 1 {
					t.Errorf("key %s allowed by %d nodes, want exactly 1 (errors %v)", k, allowed, errs)
				}
			}
		}
	})
}

// TestClusterSpreadLeadersMoves: with every shard led by one server (put
// there by step-downs), SpreadLeaders moves them onto three servers.
func TestClusterSpreadLeadersMoves(t *testing.T) {
	servers := natstest.Cluster(t, 3)
	nc := natstest.Connect(t, servers[0].ClientURL())
	s := newSharded(t, ledger.ShardedConfig{
		Config: ledger.Config{JetStream: natstest.JetStream(t, nc), Replicas: 3, Bucket: "SP"}, Shards: 3,
	})
	target := servers[0].Name()
	testwait.Until(t, 30*time.Second, "every shard led by "+target, bounded(t, func(ctx context.Context) error {
		leaders, err := s.Leaders(ctx)
		if err != nil {
			return err
		}
		for i, b := range s.Buckets() {
			if leaders[i] != target {
				// An error here (an election under way) is retried by the poll.
				nc.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN.KV_"+b, []byte(`{"placement":{"preferred":"`+target+`"}}`))
			}
		}
		if slices.ContainsFunc(leaders, func(l string) bool { return l != target }) {
			return fmt.Errorf("leaders %v", leaders)
		}
		return nil
	}))
	leaders := waitSpread(t, s)
	if slices.Contains(leaders, "") {
		t.Fatalf("leaders %v: a shard without a leader", leaders)
	}
}
