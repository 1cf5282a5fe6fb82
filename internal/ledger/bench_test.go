package ledger_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
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

// benchSyncs are the servers' fsync settings measured: nats-server's
// default (fsync every 2 minutes) and sync_interval: always, which the
// shipped configurations use (docs/OPERATIONS.md, "Durability").
var benchSyncs = []struct {
	name   string
	always bool
}{{"sync-default", false}, {"sync-always", true}}

// inFlight is the number of concurrent consumes in the parallel case, as
// many requests in flight on one verifier node.
const inFlight = 64

// benchJetStream returns a JetStream handle on a fresh server or cluster,
// every server fsyncing before each acknowledgement if syncAlways.
func benchJetStream(b *testing.B, replicas int, syncAlways bool) jetstream.JetStream {
	b.Helper()
	if testing.Short() && replicas > 1 {
		b.Skip("R3 benchmarks start a cluster; skipped with -short")
	}
	mod := func(o *server.Options) { o.SyncAlways = syncAlways }
	if replicas == 1 {
		return natstest.JetStream(b, natstest.Connect(b, natstest.ServerWith(b, mod).ClientURL()))
	}
	servers := natstest.ClusterWith(b, replicas, mod)
	return natstest.JetStream(b, natstest.Connect(b, natstest.URLs(servers)...))
}

// cpuTime is the process's user plus system CPU time: the embedded
// servers run in this process, so it is the CPU a decision's ledger write
// costs the whole cluster.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
		var lat latencies
		cpu := cpuTime(b)
		for b.Loop() {
			start := time.Now()
			if err := create(b.Context(), next()); err != nil {
				b.Fatal(err)
			}
			lat.add(time.Since(start))
		}
		b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N), "cpu-ns/op")
		lat.report(b)
	})
	b.Run(fmt.Sprintf("inflight%d", inFlight), func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(max(1, inFlight/runtimeProcs()))
		var lat latencies
		cpu := cpuTime(b)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				start := time.Now()
				if err := create(b.Context(), next()); err != nil {
					b.Error(err)
					return
				}
				lat.add(time.Since(start))
			}
		})
		b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N), "cpu-ns/op")
		lat.report(b)
	})
}

func BenchmarkConsume(b *testing.B) {
	for _, r := range benchReplicas {
		for _, sync := range benchSyncs {
			b.Run(fmt.Sprintf("R%d/%s", r, sync.name), func(b *testing.B) {
				l := newLedger(b, ledger.Config{JetStream: benchJetStream(b, r, sync.always), Replicas: r})
				entry := core.LedgerEntry{RouteID: "orders.create"}
				benchCreates(b, func(ctx context.Context, k core.LedgerKey) error {
					return l.Consume(ctx, k, time.Minute, entry)
				})
			})
		}
	}
}

func BenchmarkKVCreateRaw(b *testing.B) {
	for _, r := range benchReplicas {
		b.Run(fmt.Sprintf("R%d", r), func(b *testing.B) {
			js := benchJetStream(b, r, false)
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

// latencies collects each call's duration, to report the median: with 64
// calls in flight, ns/op is the throughput's inverse, not a call's latency.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration // guarded by mu
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	b.ReportMetric(float64(l.d[len(l.d)/2].Nanoseconds()), "p50-ns")
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
