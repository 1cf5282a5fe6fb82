package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// runHealth starts h.Run and stops it (and waits) when the test ends.
func runHealth(t testing.TB, h *ledger.Health) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _ = h.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

func newHealth(t testing.TB, cfg ledger.HealthConfig) *ledger.Health {
	t.Helper()
	h, err := ledger.NewHealth(cfg)
	if err != nil {
		t.Fatalf("NewHealth: %v", err)
	}
	return h
}

// waitHealth polls h.Err until healthy is what it says, and returns how long
// that took. The deadline is generous: the figure is logged, not asserted.
func waitHealth(t testing.TB, h *ledger.Health, healthy bool, deadline time.Duration) time.Duration {
	t.Helper()
	return testwait.Until(t, deadline, fmt.Sprintf("Health healthy=%v", healthy), func() error {
		if err := h.Err(); (err == nil) != healthy {
			return fmt.Errorf("Err() = %v", err)
		}
		return nil
	})
}

// TestHealthQuorumLoss: on a real 3-server cluster with an R3 bucket, a node
// whose server is left alone (the other two killed: no quorum, and this
// server cut off) is reported unhealthy by the probe, and healthy again once
// the two are back. readyz once said 200 for 19 s of a quorum loss.
func TestHealthQuorumLoss(t *testing.T) {
	servers := natstest.Cluster(t, 3)
	js := natstest.JetStream(t, natstest.Connect(t, servers[0].ClientURL()))
	l := newLedger(t, ledger.Config{JetStream: js, Replicas: 3, NodeID: "node a/1"})
	h := newHealth(t, ledger.HealthConfig{Ledger: l})
	if err := h.Err(); err == nil {
		t.Fatal("Err() = nil before the first probe, want unhealthy")
	}
	runHealth(t, h)
	waitHealth(t, h, true, 30*time.Second)

	// The probe key is where the docs say, and outside the jti key space.
	kv, err := js.KeyValue(t.Context(), ledger.DefaultBucket)
	if err != nil {
		t.Fatalf("KeyValue: %v", err)
	}
	if keys := probeKeys(t, kv, "node_a_1"); len(keys) == 0 {
		t.Errorf("no probe.node_a_1.* key in the bucket, want the probe keys")
	}

	// A second writer on the same connection, the witness used below.
	other := newLedger(t, ledger.Config{JetStream: js, Replicas: 3, NodeID: "witness"})
	stopped := []*natstest.Stopped{natstest.StopServer(t, servers[1]), natstest.StopServer(t, servers[2])}
	down := waitHealth(t, h, false, 60*time.Second)
	t.Logf("quorum lost: unhealthy after %v (%v)", down.Round(time.Millisecond), h.Err())
	// The consume a request would make fails too: the probe tells the truth.
	cctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	err = h.Consume(cctx, key("during-loss"), time.Minute, core.LedgerEntry{})
	cancel()
	if !errors.Is(err, core.ErrLedgerUnavailable) {
		t.Errorf("Consume during quorum loss = %v, want %v", err, core.ErrLedgerUnavailable)
	}

	for _, st := range stopped {
		natstest.RestartServer(t, st)
	}
	// When does the ledger take writes again? An independent writer polls,
	// so that the lag of Health behind the ledger itself is measured, not
	// the cluster's own recovery.
	var writable time.Time
	var ww sync.WaitGroup
	ww.Go(func() {
		for t.Context().Err() == nil {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			err := other.Probe(ctx)
			cancel()
			if err == nil {
				writable = time.Now()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	restarted := time.Now()
	waitHealth(t, h, true, 90*time.Second)
	healthy := time.Now()
	ww.Wait()
	t.Logf("quorum back: healthy %v after the restart of both servers returned; the witness's first write succeeded %v after it (Health minus witness: %v; both poll)",
		healthy.Sub(restarted).Round(time.Millisecond), writable.Sub(restarted).Round(time.Millisecond), healthy.Sub(writable).Round(time.Millisecond))
	cctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := h.Consume(cctx, key("after-loss"), time.Minute, core.LedgerEntry{}); err != nil {
		t.Errorf("Consume after recovery = %v, want nil", err)
	}
}

// TestHealthConsumeOutcomes: Threshold consecutive unavailable consumes make
// the ledger unhealthy before any probe says so; a created key (a quorum
// stored it) makes it healthy again; a replay, which a leader cut off from
// its peers can still answer, changes nothing. The failures are real: a
// malformed key is refused by the ledger as unavailable.
func TestHealthConsumeOutcomes(t *testing.T) {
	l := newLedger(t, ledger.Config{JetStream: singleNode(t)})
	// One probe at the start, then none during the test.
	h := newHealth(t, ledger.HealthConfig{Ledger: l, Interval: time.Hour, Threshold: 3})
	runHealth(t, h)
	waitHealth(t, h, true, 30*time.Second)

	ctx := t.Context()
	bad := core.LedgerKey("not-a-key")
	fail := func() {
		t.Helper()
		if err := h.Consume(ctx, bad, time.Minute, core.LedgerEntry{}); !errors.Is(err, core.ErrLedgerUnavailable) {
			t.Fatalf("Consume(bad key) = %v, want %v", err, core.ErrLedgerUnavailable)
		}
	}
	consume := func(jti string, want error) {
		t.Helper()
		if err := h.Consume(ctx, key(jti), time.Minute, core.LedgerEntry{}); !errors.Is(err, want) {
			t.Fatalf("Consume(%s) = %v, want %v", jti, err, want)
		}
	}
	for i := range 2 {
		fail()
		if err := h.Err(); err != nil {
			t.Fatalf("after %d failed consumes: Err() = %v, want nil (threshold 3)", i+1, err)
		}
	}
	fail()
	if err := h.Err(); err == nil || !strings.Contains(err.Error(), "3 consecutive consumes failed") {
		t.Fatalf("after 3 failed consumes: Err() = %v, want the run reported", err)
	}

	consume("ok", nil)
	if err := h.Err(); err != nil {
		t.Fatalf("after a created key: Err() = %v, want nil", err)
	}

	// A replay neither ends a run of failures nor counts in one.
	fail()
	fail()
	consume("ok", core.ErrReplay)
	if err := h.Err(); err != nil {
		t.Fatalf("2 failures and a replay: Err() = %v, want nil", err)
	}
	fail()
	if err := h.Err(); err == nil {
		t.Fatal("2 failures, a replay and a failure: Err() = nil, want unhealthy")
	}
	consume("ok", core.ErrReplay)
	if err := h.Err(); err == nil {
		t.Fatal("after a replay: Err() = nil, want still unhealthy")
	}
	consume("ok-2", nil)
	if err := h.Err(); err != nil {
		t.Fatalf("after a created key: Err() = %v, want nil", err)
	}
}

// TestHealthProbeOverdue: when no probe completes (Run stopped), Err stops
// reporting the last success after Interval+Timeout and one more Interval.
func TestHealthProbeOverdue(t *testing.T) {
	l := newLedger(t, ledger.Config{JetStream: singleNode(t)})
	var mu sync.Mutex
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	h := newHealth(t, ledger.HealthConfig{Ledger: l, Interval: time.Second, Timeout: time.Second, Now: clock})
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _ = h.Run(ctx) })
	waitHealth(t, h, true, 30*time.Second)
	cancel()
	wg.Wait()

	for _, tc := range []struct {
		after   time.Duration
		healthy bool
	}{{2 * time.Second, true}, {3 * time.Second, true}, {3*time.Second + time.Millisecond, false}} {
		mu.Lock()
		now = time.Unix(1_000_000, 0).Add(tc.after)
		mu.Unlock()
		if err := h.Err(); (err == nil) != tc.healthy {
			t.Errorf("%v after the last probe: Err() = %v, want healthy=%v", tc.after, err, tc.healthy)
		}
	}
}

// TestProbeKeyNeverAJTI: each probe writes a subject of three tokens
// under the node's, where a jti's key is one token of 64 hex digits.
func TestProbeKeyNeverAJTI(t *testing.T) {
	js := singleNode(t)
	for _, node := range []string{"", "n1", "a.b *>"} {
		// Not newLedger, which fills in an empty NodeID.
		l, err := ledger.New(t.Context(), ledger.Config{JetStream: js, MaxAge: testMaxAge, NodeID: node})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		t.Cleanup(func() { l.Close() })
		if err := l.Probe(t.Context()); err != nil {
			t.Fatalf("Probe(node %q) = %v", node, err)
		}
	}
	kv, err := js.KeyValue(t.Context(), ledger.DefaultBucket)
	if err != nil {
		t.Fatalf("KeyValue: %v", err)
	}
	keys, err := kv.ListKeys(t.Context(), jetstream.IgnoreDeletes())
	if err != nil {
		t.Fatalf("ListKeys: %v", err)
	}
	var got []string
	for k := range keys.Keys() {
		got = append(got, k)
	}
	// One key per probe: probe.<node token>.<unique token>.
	want := map[string]int{"probe.node": 0, "probe.n1": 0, "probe.a_b___": 0}
	for _, k := range got {
		i := strings.LastIndexByte(k, '.')
		if _, ok := want[k[:max(i, 0)]]; !ok || i == len(k)-1 {
			t.Errorf("unexpected key %q", k)
			continue
		}
		want[k[:i]]++
	}
	for node, n := range want {
		if n != 1 {
			t.Errorf("%d keys %s.*, want 1 (keys %v)", n, node, got)
		}
	}
}

// probeKeys lists the bucket's probe keys of node (its subject token).
func probeKeys(t *testing.T, kv jetstream.KeyValue, node string) []string {
	t.Helper()
	keys, err := kv.ListKeysFiltered(t.Context(), ledger.ProbeToken+"."+node+".*")
	if err != nil {
		t.Fatalf("ListKeysFiltered: %v", err)
	}
	var got []string
	for k := range keys.Keys() {
		got = append(got, k)
	}
	return got
}

// TestShardedProbe: a sharded ledger's probe writes the node's probe key
// into every shard of both layouts, so a shard without a quorum makes the
// node unready.
func TestShardedProbe(t *testing.T) {
	js := singleNode(t)
	s := newSharded(t, ledger.ShardedConfig{Config: ledger.Config{JetStream: js, Bucket: "PR"}, Shards: 3, PreviousShards: 2})
	if err := s.Probe(t.Context()); err != nil {
		t.Fatalf("Probe = %v", err)
	}
	// Layouts 2 and 3 share their shard buckets' names (ShardBucket).
	buckets := s.Buckets()
	if len(buckets) != 3 {
		t.Fatalf("Buckets() = %v, want the 3 buckets of both layouts", buckets)
	}
	for _, b := range buckets {
		kv, err := js.KeyValue(t.Context(), b)
		if err != nil {
			t.Fatal(err)
		}
		if keys := probeKeys(t, kv, "node-1"); len(keys) != 1 {
			t.Errorf("bucket %s: probe keys %v, want the one probe key", b, keys)
		}
	}
}

// TestProbeAgain: the ledger stream refuses a second message on a subject
// (a jti is consumed once), so every probe writes a key of its own; a
// probe that rewrote the node's one key failed from its second write on
// and left the node unready.
func TestProbeAgain(t *testing.T) {
	js := singleNode(t)
	l := newLedger(t, ledger.Config{JetStream: js, NodeID: "again"})
	for i := range 5 {
		if err := l.Probe(t.Context()); err != nil {
			t.Fatalf("probe %d = %v, want nil", i+1, err)
		}
	}
	kv, err := js.KeyValue(t.Context(), ledger.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	if keys := probeKeys(t, kv, "again"); len(keys) != 5 {
		t.Errorf("probe keys %v, want 5", keys)
	}
}
