package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/reason"
)

func openSpool(t testing.TB, cfg SpoolConfig) *Spool {
	t.Helper()
	if cfg.NodeID == "" {
		cfg.NodeID = "node-a"
	}
	s, err := OpenSpool(cfg)
	if err != nil {
		t.Fatalf("OpenSpool: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// decision is a small request event.
func decision(i int) *Event {
	return &Event{Component: "verifier", Outcome: OutcomeDeny, ReasonCode: reason.PassportMissing,
		RequestID: fmt.Sprintf("req-%d", i), Method: "GET", Path: "/v1/orders/x", Status: 401}
}

func appendN(t testing.TB, s *Spool, from, n int) []*Event {
	t.Helper()
	var out []*Event
	for i := from; i < from+n; i++ {
		e := decision(i)
		if err := s.Append(t.Context(), e); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		out = append(out, e)
	}
	return out
}

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
		v.Add(m.seq, m.subject, m.data)
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
	for _, p := range v.Problems() {
		t.Errorf("chain problem: %s", p)
	}
	if count != n {
		t.Errorf("node %s: %d events in the stream, want %d", node, count, n)
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
