package ledger_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
)

// BenchmarkConsumeShards measures inflight64 consumes on a three-server
// cluster with R3 buckets, in one shard and in three, and reports where
// the writes went: for each server, the share of all stored keys held by
// the shards it leads ("S-1-share"), and the largest share
// ("max-leader-share": 1 means one leader took every write, 0.33 an even
// spread over three). Run:
//
//	go test -run '^$' -bench ConsumeShards -benchmem -count=5 ./internal/ledger
func BenchmarkConsumeShards(b *testing.B) {
	if testing.Short() {
		b.Skip("starts a cluster; skipped with -short")
	}
	for _, shards := range []int{1, 3} {
		// One cluster for every round of b.Run's calibration: the shares
		// add up over them.
		servers := natstest.Cluster(b, 3)
		js := natstest.JetStream(b, natstest.Connect(b, natstest.URLs(servers)...))
		s := newSharded(b, ledger.ShardedConfig{Config: ledger.Config{JetStream: js, Replicas: 3}, Shards: shards})
		if shards > 1 {
			waitSpread(b, s)
		}
		var n atomic.Uint64
		b.Run(fmt.Sprintf("R3/shards%d/inflight%d", shards, inFlight), func(b *testing.B) {
			entry := core.LedgerEntry{RouteID: "orders.create"}
			b.ReportAllocs()
			b.SetParallelism(max(1, inFlight/runtimeProcs()))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					k := key(fmt.Sprint(n.Add(1))) // a real key: a SHA-256, spread over the shards
					if err := s.Consume(b.Context(), k, time.Minute, entry); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			perLeader, total := keysPerLeader(b, js, s)
			b.Logf("shards %d: %d keys, by stream leader %v", shards, total, perLeader)
			var top float64
			for _, srv := range servers {
				share := float64(perLeader[srv.Name()]) / float64(max(total, 1))
				b.ReportMetric(share, srv.Name()+"-share")
				top = max(top, share)
			}
			b.ReportMetric(top, "max-leader-share")
		})
	}
}

// keysPerLeader returns the keys stored in s's shards, summed by the
// server that leads each shard's stream, and the total.
func keysPerLeader(b *testing.B, js jetstream.JetStream, s *ledger.Sharded) (map[string]uint64, uint64) {
	b.Helper()
	leaders, err := s.Leaders(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	counts := map[string]uint64{}
	var total uint64
	for i, bucket := range s.Buckets() {
		st, err := js.Stream(b.Context(), "KV_"+bucket)
		if err != nil {
			b.Fatal(err)
		}
		info, err := st.Info(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		counts[leaders[i]] += info.State.Msgs
		total += info.State.Msgs
	}
	return counts, total
}
