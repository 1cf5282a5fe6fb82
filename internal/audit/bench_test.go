//go:build !auditfuzz

package audit

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/reason"
)

// benchEvent is a full allow event, as a decision records it.
func benchEvent() *Event {
	return &Event{Component: "verifier", Outcome: OutcomeAllow, Accepted: true, ReasonCode: reason.Allowed,
		RequestID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", RouteID: "orders.create", Audience: "orders-api",
		Issuer: "https://issuer.example", Subject: "spiffe://example.local/workload/orders", JTI: "0f8e5c1a9b2d4e6f",
		KeyBinding: "software", RequiredKeyBinding: "software", TranscriptSHA256: strings.Repeat("ab", 32),
		PolicyID: strings.Repeat("cd", 32), PolicyVersion: 7, Method: "POST", Path: "/v1/orders", Status: 200,
		LatencyUS: 412, BundleSequence: 7, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"}
}

func BenchmarkEncode(b *testing.B) {
	b.ReportAllocs()
	e := benchEvent()
	e.NodeSeq, e.PrevEventSHA256, e.EventID = 1, zeroHash, "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
	for b.Loop() {
		if _, err := e.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppend is what the audit record adds to a decision: event id,
// chain, encoding and one write(2); fsync runs in batches elsewhere.
// "fsync-each" shows what an fsync per decision would cost instead.
func BenchmarkAppend(b *testing.B) {
	for _, mode := range []string{"batched-fsync", "fsync-each"} {
		b.Run(mode, func(b *testing.B) {
			b.ReportAllocs()
			s := openSpool(b, SpoolConfig{Dir: b.TempDir(), MaxBytes: 8 << 30})
			for b.Loop() {
				if err := s.Append(b.Context(), benchEvent()); err != nil {
					b.Fatal(err)
				}
				if mode == "fsync-each" {
					s.mu.Lock()
					s.unsync = true
					s.mu.Unlock()
					if err := s.Sync(); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkAppendParallel appends from many goroutines, as concurrent
// requests do.
func BenchmarkAppendParallel(b *testing.B) {
	b.ReportAllocs()
	s := openSpool(b, SpoolConfig{Dir: b.TempDir(), MaxBytes: 8 << 30})
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Append(context.Background(), benchEvent()); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkPublish measures events per second from the spool into a
// JetStream stream on an embedded server (R1, file storage), by window:
// one op appends 1000 events and waits until all are acknowledged.
func BenchmarkPublish(b *testing.B) {
	for _, window := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) {
			srv := natstest.Server(b)
			nc := natstest.Connect(b, srv.ClientURL())
			ensure(b, natstest.JetStream(b, nc))
			s := openSpool(b, SpoolConfig{Dir: b.TempDir(), MaxBytes: 8 << 30})
			p := newPublisher(b, s, PublisherConfig{Conn: nc, Window: window})
			runPublisher(b, p)
			const batch = 1000
			start := time.Now()
			var n int
			for b.Loop() {
				for range batch {
					if err := s.Append(b.Context(), benchEvent()); err != nil {
						b.Fatal(err)
					}
				}
				flush(b, p)
				n += batch
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
		})
	}
}

// BenchmarkSignEvent is what --audit-key adds per event, on the
// publisher's goroutine (off the request path).
func BenchmarkSignEvent(b *testing.B) {
	b.ReportAllocs()
	key := newAuditKey(b)
	e := benchEvent()
	e.NodeSeq, e.PrevEventSHA256, e.EventID = 1, zeroHash, "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
	data, err := e.Encode()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		_ = signEvent(key, data)
	}
}

// BenchmarkVerifyEvent is tpaudit verify's cost per event of a fleet
// member: decode, signature, chain.
func BenchmarkVerifyEvent(b *testing.B) {
	b.ReportAllocs()
	key := newAuditKey(b)
	s := openSpool(b, SpoolConfig{Dir: b.TempDir(), NodeID: "node-a", MaxBytes: 8 << 30})
	const n = 4096
	msgs := make([]Msg, n)
	for i := range msgs {
		e := benchEvent()
		if err := s.Append(b.Context(), e); err != nil {
			b.Fatal(err)
		}
		data, err := e.Encode()
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = Msg{Subject: e.NATSSubject(), Data: data, Signature: signEvent(key, data)}
	}
	v := &ChainVerifier{Members: []Member{memberOf("node-a", key, false)}}
	i := 0
	for b.Loop() {
		if i == n { // a fresh chain, as a second node would be
			v = &ChainVerifier{Members: v.Members}
			i = 0
		}
		m := msgs[i]
		m.StreamSeq = uint64(i + 1)
		v.Add(m)
		i++
	}
	if len(v.Problems()) > 0 {
		b.Fatal(v.Problems()[0])
	}
}
