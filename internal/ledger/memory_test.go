package ledger_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
)

// BenchmarkLiveKeyMemory measures the server memory a live jti costs: it
// fills an R1 ledger bucket on an external nats-server (the go.mod
// version) with 1,000,000 live keys, the way Consume writes them, and
// reports the growth of the server's resident memory per key, to check
// SPEC §7's capacity figure (about 180 bytes per live key per replica).
// It runs once whatever b.N is; run it with
//
//	go test -run '^$' -bench BenchmarkLiveKeyMemory -benchtime 1x ./internal/ledger
func BenchmarkLiveKeyMemory(b *testing.B) {
	const keys = 1_000_000
	ext := natstest.StartExternal(b)
	nc := natstest.Connect(b, ext.ClientURL())
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	l, err := ledger.New(b.Context(), ledger.Config{JetStream: js, MaxAge: testMaxAge, NodeID: "mem"})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	settle := func() uint64 {
		time.Sleep(2 * time.Second) // let the server's own allocations settle; a measurement, not a wait for an effect
		return rssBytes(b, ext.PID())
	}
	before := settle()
	start := time.Now()
	for b.Loop() {
		for i := range keys {
			key := fmt.Sprintf("%064x", i)
			msg := &nats.Msg{
				Subject: "$KV." + ledger.DefaultBucket + "." + key,
				Header: nats.Header{
					jetstream.ExpectedLastSubjSeqHeader: {"0"},
					jetstream.MsgTTLHeader:              {"900s"},
				},
				Data: []byte(`{"node":"mem","at":"2026-11-23T14:00:00.000Z","route_id":"orders.create"}`),
			}
			if _, err := js.PublishMsgAsync(msg); err != nil {
				b.Fatalf("publish %d: %v", i, err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(5 * time.Minute):
			b.Fatal("publishes not acknowledged within 5 minutes")
		}
	}
	filled := time.Since(start)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(b.Context()), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "KV_"+ledger.DefaultBucket)
	if err != nil {
		b.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if info.State.Msgs != keys {
		b.Fatalf("bucket holds %d keys, want %d", info.State.Msgs, keys)
	}
	after := settle()
	per := float64(after-before) / keys
	b.ReportMetric(per, "B/livekey")
	b.ReportMetric(float64(info.State.Bytes)/keys, "storeB/livekey")
	b.Logf("%d live keys written in %s; server RSS %d MiB -> %d MiB: %.0f bytes of memory per live key (SPEC §7: about 180); file store %.0f bytes per key",
		keys, filled.Round(time.Millisecond), before>>20, after>>20, per, float64(info.State.Bytes)/keys)
}

// rssBytes reads VmRSS of pid from /proc.
func rssBytes(b *testing.B, pid int) uint64 {
	b.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			kb, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmRSS in /proc status")
	return 0
}
