package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
)

// TestClusterExactlyOnce: 200 distinct signed requests, each sent
// concurrently to three verifierd nodes five times: exactly 200 allows and
// 2800 jti_replay, nothing else. Once on a three-server NATS cluster with an
// R3 ledger, once on the same cluster with the ledger in three R3 shards
// (--ledger-shards 3), once on a single server with an R1 ledger.
func TestClusterExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: three verifierd nodes and 3000 requests; CI runs it")
	}
	for _, tc := range []struct {
		name     string
		servers  int
		replicas string
		flags    []string
	}{
		{"R3 cluster", 3, "3", nil},
		{"R3 cluster 3 shards", 3, "3", []string{"--ledger-shards", "3"}},
		{"R1 single server", 1, "1", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet(t, fleetOpts{servers: tc.servers})
			w, up := f.world, f.up
			nodes := f.startN(t, 3, nodeOpts{files: true, flags: append([]string{"--ledger-replicas", tc.replicas}, tc.flags...)})
			const distinct, rounds = 200, 5
			type job struct {
				req  *http.Request
				node *node
			}
			jobs := make(chan job)
			var (
				mu     sync.Mutex
				counts = map[string]int{}
			)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
			var wg sync.WaitGroup
			for range 48 {
				wg.Go(func() {
					for j := range jobs {
						resp, err := client.Do(j.req)
						key := "error"
						if err == nil {
							a := answer{status: resp.StatusCode}
							buf := make([]byte, 512)
							k, _ := resp.Body.Read(buf)
							resp.Body.Close()
							a.body = buf[:k]
							key = fmt.Sprintf("%d %s", a.status, a.reason())
							if a.status == 200 {
								key = "200 allowed"
							}
						}
						mu.Lock()
						counts[key]++
						mu.Unlock()
					}
				})
			}
			start := time.Now()
			for i := range distinct {
				// One signed request (one passport, one jti) for the
				// authority a load balancer would present; every node gets
				// the very same bytes with that Host.
				req := w.signed(t, "GET", "http://orders.e2e/v1/orders/"+fmt.Sprint(i), "orders.get", nil)
				for range rounds {
					for _, n := range nodes {
						c := clone(t, req, nil)
						c.URL.Host = strings.TrimPrefix(n.URL, "http://")
						c.Host = "orders.e2e"
						jobs <- job{req: c, node: n}
					}
				}
			}
			close(jobs)
			wg.Wait()
			t.Logf("%s: %d requests in %s: %v", tc.name, distinct*rounds*len(nodes), time.Since(start).Round(time.Millisecond), counts)
			want := map[string]int{"200 allowed": distinct, "409 jti_replay": distinct*rounds*len(nodes) - distinct}
			if len(counts) != len(want) || counts["200 allowed"] != want["200 allowed"] || counts["409 jti_replay"] != want["409 jti_replay"] {
				t.Errorf("outcomes = %v, want %v", counts, want)
			}
			if up.count() != distinct {
				t.Errorf("upstream got %d requests, want %d", up.count(), distinct)
			}
			if tc.flags != nil {
				checkShards(t, f.url, 3, distinct)
			}
		})
	}
}

// checkShards asserts that the consumed keys are in the n shard buckets,
// every shard holding some, total keys in all, and that the shards' stream
// leaders are n different servers (the nodes spread them at start).
func checkShards(t *testing.T, url string, n, total int) {
	t.Helper()
	js := natstest.JetStream(t, natstest.Connect(t, url))
	var sum uint64
	var per []uint64
	var leaders []string
	for i := range n {
		bucket := ledger.ShardBucket(ledger.DefaultBucket, i, n)
		s, err := js.Stream(t.Context(), "KV_"+bucket)
		if err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
		// Count jti keys only: one token each, where the nodes' readiness
		// probe keys (probe.<node>) have two.
		info, err := s.Info(t.Context(), jetstream.WithSubjectFilter("$KV."+bucket+".*"))
		if err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
		var keys uint64
		for _, c := range info.State.Subjects {
			keys += c
		}
		per = append(per, keys)
		sum += keys
		if info.Cluster != nil {
			leaders = append(leaders, info.Cluster.Leader)
		}
	}
	t.Logf("keys per shard %v, shard leaders %v", per, leaders)
	if sum != uint64(total) || slices.Contains(per, 0) {
		t.Errorf("keys per shard %v, want %d in all and none empty", per, total)
	}
	if d := slices.Compact(slices.Sorted(slices.Values(leaders))); len(d) != n {
		t.Errorf("shard leaders %v, want %d different servers", leaders, n)
	}
}
