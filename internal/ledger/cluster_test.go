package ledger_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
)

// TestClusterR3ExactlyOnce races five nodes, each with its own connection to
// a different server of an R3 cluster, on every one of 200 keys: exactly one
// consume per key wins, and every other one is a replay.
func TestClusterR3ExactlyOnce(t *testing.T) {
	servers := natstest.Cluster(t, 3)
	const nodes, keys = 5, 200
	ledgers := make([]*ledger.Ledger, nodes)
	var wg sync.WaitGroup
	newErrs := make([]error, nodes)
	for i := range nodes {
		nc := natstest.Connect(t, servers[i%len(servers)].ClientURL())
		js := natstest.JetStream(t, nc)
		wg.Go(func() { // all nodes start at once (SPEC §10.1)
			// A generous timeout: on a loaded machine a loser's
			// confirmation read (10164) can take longer than 2s, and
			// then answers unavailable, which this test does not count.
			l, err := ledger.New(t.Context(), ledger.Config{
				JetStream: js, Replicas: 3, MaxAge: testMaxAge, NodeID: fmt.Sprintf("node-%d", i),
				Timeout: 10 * time.Second,
			})
			ledgers[i], newErrs[i] = l, err
		})
	}
	wg.Wait()
	for i, err := range newErrs {
		if err != nil {
			t.Fatalf("node %d: New = %v", i, err)
		}
		t.Cleanup(func() { ledgers[i].Close() })
	}

	type result struct {
		key  int
		err  error
		code uint16
	}
	results := make(chan result, nodes*keys)
	start := time.Now()
	for k := range keys {
		for _, l := range ledgers {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				err := l.Consume(ctx, key(fmt.Sprintf("r3-%d", k)), time.Minute, core.LedgerEntry{RouteID: "orders.create"})
				code, _ := natsx.APIErrorCode(err)
				results <- result{k, err, code}
			})
		}
	}
	wg.Wait()
	close(results)
	t.Logf("%d consumes on R3 in %v", nodes*keys, time.Since(start))

	created := make([]int, keys)
	var nils, replays int
	codes := map[uint16]int{}
	for r := range results {
		switch sentinel(t, r.err) {
		case nil:
			nils++
			created[r.key]++
		case core.ErrReplay:
			replays++
			codes[r.code]++
		default:
			t.Errorf("key %d: Consume = %v, want nil or %v", r.key, r.err, core.ErrReplay)
		}
	}
	if nils != keys || replays != (nodes-1)*keys {
		t.Errorf("%d created and %d replays, want %d and %d", nils, replays, keys, (nodes-1)*keys)
	}
	for k, n := range created {
		if n != 1 {
			t.Errorf("key %d created %d times, want once", k, n)
		}
	}
	t.Logf("replays by JetStream error code: %v", codes)
}

// TestClusterReplicasMismatch: an R1 bucket where R3 is asked for is a
// clear error, not a silent downgrade.
func TestClusterReplicasMismatch(t *testing.T) {
	servers := natstest.Cluster(t, 3)
	js := natstest.JetStream(t, natstest.Connect(t, natstest.URLs(servers)...))
	newLedger(t, ledger.Config{JetStream: js, Bucket: "R1", Replicas: 1})
	l, err := ledger.New(t.Context(), ledger.Config{JetStream: js, Bucket: "R1", Replicas: 3, MaxAge: testMaxAge})
	if err == nil {
		l.Close()
		t.Fatal("New(R3) on an R1 bucket = nil error")
	}
	if want := "bucket R1: exists with 1 replicas, want 3"; !strings.Contains(err.Error(), want) {
		t.Errorf("New(R3) on an R1 bucket = %q, want it to contain %q", err, want)
	}
}

// TestClusterUncommittedIsNotReplay: a create the stream leader proposed
// but could not commit (its followers are gone) makes the next create of the
// same key fail with 10164, "a write to this subject is in flight". That is
// no proof of a replay: the proposal may never commit (a deposed
// leader answered so for jtis never committed, and they were denied 409).
// The ledger reads the key from the leader, does not find it, and answers
// unavailable (503, retryable), never a replay.
func TestClusterUncommittedIsNotReplay(t *testing.T) {
	servers := natstest.Cluster(t, 3)
	js := natstest.JetStream(t, natstest.Connect(t, natstest.URLs(servers)...))
	newLedger(t, ledger.Config{JetStream: js, Replicas: 3}) // creates the bucket

	info, err := js.Stream(t.Context(), "KV_"+ledger.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	leaderName := info.CachedInfo().Cluster.Leader
	var leader *server.Server
	for _, s := range servers {
		if s.Name() == leaderName {
			leader = s
		}
	}
	if leader == nil {
		t.Fatalf("stream leader %q is none of the servers", leaderName)
	}
	// A connection to the leader alone, so the writes reach it.
	lc := natstest.Connect(t, leader.ClientURL())
	ll := newLedger(t, ledger.Config{JetStream: natstest.JetStream(t, lc), Replicas: 3, Timeout: 500 * time.Millisecond})
	for _, s := range servers {
		if s != leader {
			natstest.StopServer(t, s)
		}
	}

	k := key("never-committed")
	var saw10164 bool
	for i := 0; i < 20 && !saw10164; i++ {
		err := ll.Consume(t.Context(), k, time.Minute, core.LedgerEntry{RouteID: "orders.create"})
		code, _ := natsx.APIErrorCode(err)
		t.Logf("consume %d without quorum: code %d: %v", i, code, err)
		if got := sentinel(t, err); got != core.ErrLedgerUnavailable {
			t.Fatalf("consume %d of a key never committed = %v, want %v", i, err, core.ErrLedgerUnavailable)
		}
		saw10164 = code == uint16(jetstream.JSErrCodeStreamWrongLastSequenceConstant)
	}
	if !saw10164 {
		t.Fatal("the leader never refused with 10164: the confirmation path was not exercised")
	}
}
