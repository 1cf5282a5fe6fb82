package ledger_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
)

// Run both side by side:
//
//	go test -run '^$' -bench 'Consume|KVCreateRaw' -benchmem -count=10 ./internal/ledger
//
// BenchmarkKVCreateRaw is nats.go's kv.Create with a per-key TTL on the same
// bucket configuration: the floor Consume's one publish is measured against.

// benchReplicas are the bucket layouts measured: one embedded server, and
// a three-node cluster (SPEC §7: R1 embedded default, R3 in a cluster).
var benchReplicas = []int{1, 3}

// inFlight is the number of concurrent consumes in the parallel case, as
// many requests in flight on one verifier node.
const inFlight = 64

// benchJetStream returns a JetStream handle on a fresh server or cluster.
func benchJetStream(b *testing.B, replicas int) jetstream.JetStream {
	b.Helper()
	if replicas == 1 {
		return singleNode(b)
	}
	if testing.Short() {
		b.Skip("R3 benchmarks start a cluster; skipped with -short")
	}
	servers := natstest.Cluster(b, replicas)
	return natstest.JetStream(b, natstest.Connect(b, natstest.URLs(servers)...))
}

// benchCreates measures create, called with a fresh key each time, serially
// and with inFlight calls at once.
func benchCreates(b *testing.B, create func(ctx context.Context, k core.LedgerKey) error) {
	var n atomic.Uint64
	next := func() core.LedgerKey {
		return core.LedgerKey(fmt.Sprintf("%064x", n.Add(1)))
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := create(b.Context(), next()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run(fmt.Sprintf("inflight%d", inFlight), func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(max(1, inFlight/runtimeProcs()))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := create(b.Context(), next()); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkConsume(b *testing.B) {
	for _, r := range benchReplicas {
		b.Run(fmt.Sprintf("R%d", r), func(b *testing.B) {
			l := newLedger(b, ledger.Config{JetStream: benchJetStream(b, r), Replicas: r})
			entry := core.LedgerEntry{RouteID: "orders.create"}
			benchCreates(b, func(ctx context.Context, k core.LedgerKey) error {
				return l.Consume(ctx, k, time.Minute, entry)
			})
		})
	}
}

func BenchmarkKVCreateRaw(b *testing.B) {
	for _, r := range benchReplicas {
		b.Run(fmt.Sprintf("R%d", r), func(b *testing.B) {
			js := benchJetStream(b, r)
			kv, err := js.CreateKeyValue(b.Context(), jetstream.KeyValueConfig{
				Bucket: "RAW", History: 1, TTL: testMaxAge, Replicas: r, LimitMarkerTTL: time.Second,
			})
			if err != nil {
				b.Fatal(err)
			}
			value := []byte(`{"node":"node-1","at":"2026-11-23T10:00:00.000Z","route_id":"orders.create"}`)
			benchCreates(b, func(ctx context.Context, k core.LedgerKey) error {
				ctx, cancel := context.WithTimeout(ctx, ledger.DefaultTimeout)
				defer cancel()
				_, err := kv.Create(ctx, string(k), value, jetstream.KeyTTL(time.Minute))
				return err
			})
		})
	}
}

// BenchmarkConsumeReplay measures the refused path, which an attacker
// replaying one passport drives: one round trip, like a create.
func BenchmarkConsumeReplay(b *testing.B) {
	l := newLedger(b, ledger.Config{JetStream: singleNode(b)})
	k := key("replayed")
	if err := l.Consume(b.Context(), k, time.Minute, core.LedgerEntry{}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Consume(b.Context(), k, time.Minute, core.LedgerEntry{}); err == nil {
			b.Fatal("replay accepted")
		}
	}
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
