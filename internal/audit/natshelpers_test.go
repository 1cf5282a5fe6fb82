//go:build !auditfuzz

package audit

// Helpers of the tests that run a real NATS server. They are left out with
// -tags auditfuzz: linking nats-server makes the fuzzer's coverage
// bookkeeping about twenty times slower (see fuzz_test.go).

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// stored is one message of the audit stream.
type stored struct {
	seq     uint64
	subject string
	msgID   string
	data    []byte
}

// readStream returns every message of the stream, in order.
func readStream(t testing.TB, js jetstream.JetStream, name string) []stored {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted
		}
		if err != nil {
			t.Fatalf("get msg %d: %v", seq, err)
		}
		out = append(out, stored{seq: seq, subject: m.Subject, msgID: m.Header.Get(jetstream.MsgIDHeader), data: m.Data})
	}
	return out
}

// checkChain fails unless msgs are node's events 1..n exactly once, in
// order, each chained to the one before.
func checkChain(t testing.TB, msgs []stored, node string, n int) {
	t.Helper()
	var v ChainVerifier
	var count int
	for _, m := range msgs {
		if IsCheckpointSubject(m.subject) {
			continue
		}
		v.Add(Msg{StreamSeq: m.seq, Subject: m.subject, Data: m.data})
		e, err := Decode(m.data)
		if err != nil {
			t.Fatal(err)
		}
		if e.NodeID != node {
			continue
		}
		count++
		if m.msgID != e.EventID {
			t.Errorf("stream seq %d: Nats-Msg-Id %q, event_id %q", m.seq, m.msgID, e.EventID)
		}
	}
	v.Finish()
	for _, p := range v.Problems() {
		if p.Kind == ProblemUnknownNode {
			continue // no fleet here: the chain alone is under test
		}
		t.Errorf("chain problem: %s", p)
	}
	if count != n {
		t.Errorf("node %s: %d events in the stream, want %d", node, count, n)
	}
	for _, nc := range v.Nodes() {
		if nc.Reordered > 0 {
			t.Logf("node %s: %d events stored out of node_seq order", nc.NodeID, nc.Reordered)
		}
	}
}

// runPublisher starts p.Run and returns a stop function that cancels it and
// waits for it to return.
func runPublisher(t testing.TB, p *Publisher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := p.Run(ctx); err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

func newPublisher(t testing.TB, s *Spool, cfg PublisherConfig) *Publisher {
	t.Helper()
	cfg.Spool = s
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	}
	p, err := NewPublisher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ensure(t testing.TB, js jetstream.JetStream) {
	t.Helper()
	if err := EnsureStream(t.Context(), js, StreamConfig{}, nil); err != nil {
		t.Fatalf("EnsureStream: %v", err)
	}
}

func flush(t testing.TB, p *Publisher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}
