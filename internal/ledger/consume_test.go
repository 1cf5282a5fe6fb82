package ledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

var _ core.Ledger = (*ledger.Ledger)(nil)

func TestConsumeThenReplay(t *testing.T) {
	l := newLedger(t, ledger.Config{JetStream: singleNode(t)})
	k := key("jti-1")
	if err := l.Consume(t.Context(), k, time.Minute, core.LedgerEntry{RouteID: "orders.create"}); err != nil {
		t.Fatalf("first Consume(%s) = %v, want nil", k, err)
	}
	for i := range 3 {
		err := l.Consume(t.Context(), k, time.Minute, core.LedgerEntry{RouteID: "orders.create"})
		if got := sentinel(t, err); got != core.ErrReplay {
			t.Fatalf("Consume #%d of the same key = %v, want %v", i+2, err, core.ErrReplay)
		}
	}
	// Another jti, and the same jti from another issuer, are other keys.
	if err := l.Consume(t.Context(), key("jti-2"), time.Minute, core.LedgerEntry{}); err != nil {
		t.Errorf("Consume of another jti = %v, want nil", err)
	}
	if err := l.Consume(t.Context(), core.NewLedgerKey("https://other.example", "jti-1"), time.Minute, core.LedgerEntry{}); err != nil {
		t.Errorf("Consume of the same jti from another issuer = %v, want nil", err)
	}
}

// TestConsumeTTLExpiry: once a key's TTL has passed, a create succeeds again
// (SPEC §7), which is safe only because of the TTL rule.
func TestConsumeTTLExpiry(t *testing.T) {
	l := newLedger(t, ledger.Config{JetStream: singleNode(t)})
	k := key("short-lived")
	start := time.Now()
	if err := l.Consume(t.Context(), k, time.Second, core.LedgerEntry{}); err != nil {
		t.Fatalf("Consume = %v", err)
	}
	if err := l.Consume(t.Context(), k, time.Second, core.LedgerEntry{}); sentinel(t, err) != core.ErrReplay && time.Since(start) < time.Second {
		t.Fatalf("Consume within the TTL = %v, want %v", err, core.ErrReplay)
	}
	testwait.Until(t, 15*time.Second, "key consumable again after its TTL", bounded(t, func(ctx context.Context) error {
		err := l.Consume(ctx, k, time.Second, core.LedgerEntry{})
		if err != nil && sentinel(t, err) != core.ErrReplay {
			t.Fatalf("Consume while waiting for expiry = %v, want nil or %v", err, core.ErrReplay)
		}
		return err
	}))
	elapsed := time.Since(start)
	t.Logf("a 1s key was consumable again after %v", elapsed)
	if elapsed < time.Second {
		t.Errorf("key consumable again after %v, before its 1s TTL", elapsed)
	}
}

// TestConsumeWire looks at the raw message a consume publishes, through a
// core NATS subscription on the bucket's subjects.
func TestConsumeWire(t *testing.T) {
	s := natstest.Server(t)
	nc := natstest.Connect(t, s.ClientURL())
	now := time.Date(2026, 11, 23, 10, 0, 0, 123e6, time.UTC)
	l := newLedger(t, ledger.Config{
		JetStream: natstest.JetStream(t, nc),
		Bucket:    "WIRE",
		NodeID:    "node-7",
		Now:       func() time.Time { return now },
	})
	watcher := natstest.Connect(t, s.ClientURL())
	sub, err := watcher.SubscribeSync("$KV.WIRE.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	k := key("wire")
	if err := l.Consume(t.Context(), k, 1500*time.Millisecond, core.LedgerEntry{RouteID: "orders.create"}); err != nil {
		t.Fatalf("Consume = %v", err)
	}
	if err := l.Consume(t.Context(), k, time.Minute, core.LedgerEntry{RouteID: "orders.create"}); sentinel(t, err) != core.ErrReplay {
		t.Fatalf("second Consume = %v, want %v", err, core.ErrReplay)
	}

	for i := range 2 { // the write and the refused replay both travel
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
		if m.Subject != "$KV.WIRE."+string(k) {
			t.Errorf("subject = %q, want $KV.WIRE.%s", m.Subject, k)
		}
		// SPEC §7: a Nats-Msg-Id would let the duplicate window ack a replay.
		if v, ok := m.Header[jetstream.MsgIDHeader]; ok {
			t.Errorf("message %d carries %s %q: a replay could be acknowledged as new", i+1, jetstream.MsgIDHeader, v)
		}
		for name, want := range map[string]string{
			jetstream.ExpectedLastSubjSeqHeader: "0",
			jetstream.MsgTTLHeader:              []string{"2s", "60s"}[i], // 1.5s rounds up, never down
		} {
			if got := m.Header.Get(name); got != want {
				t.Errorf("message %d header %s = %q, want %q", i+1, name, got, want)
			}
		}
		if len(m.Header) != 2 {
			t.Errorf("message %d headers = %v, want only the two above", i+1, m.Header)
		}
		var v map[string]string
		if err := json.Unmarshal(m.Data, &v); err != nil {
			t.Fatalf("value %q: %v", m.Data, err)
		}
		want := map[string]string{"node": "node-7", "at": "2026-11-23T10:00:00.123Z", "route_id": "orders.create"}
		if len(v) != len(want) || v["node"] != want["node"] || v["at"] != want["at"] || v["route_id"] != want["route_id"] {
			t.Errorf("value = %s, want %v", m.Data, want)
		}
	}
}

func TestConsumeRefusesBrokenCalls(t *testing.T) {
	js := singleNode(t)
	l := newLedger(t, ledger.Config{JetStream: js})
	good := key("good")
	tests := []struct {
		name string
		key  core.LedgerKey
		ttl  time.Duration
	}{
		{"empty key", "", time.Minute},
		{"short key", good[:63], time.Minute},
		{"upper-case key", core.LedgerKey("A" + good[1:]), time.Minute},
		{"wildcard key", core.LedgerKey(">" + good[1:]), time.Minute},
		{"dotted key", core.LedgerKey(good[:32] + "." + good[33:]), time.Minute},
		{"raw jti", "jti-123", time.Minute},
		{"zero ttl", good, 0},
		{"negative ttl", good, -time.Second},
		{"ttl beyond max age", good, testMaxAge + time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := l.Consume(t.Context(), tt.key, tt.ttl, core.LedgerEntry{})
			if got := sentinel(t, err); got != core.ErrLedgerUnavailable {
				t.Errorf("Consume(%q, %v) = %v, want %v", tt.key, tt.ttl, err, core.ErrLedgerUnavailable)
			}
		})
	}
	// None of them wrote anything.
	if err := l.Consume(t.Context(), good, testMaxAge, core.LedgerEntry{}); err != nil {
		t.Errorf("Consume(good) after the refused calls = %v, want nil", err)
	}
}

// TestConsumeBounded: a consume waits no longer than the ledger's timeout or
// the caller's deadline, whichever is sooner. Deleting the bucket's stream
// leaves the write with no responders, which nats.go retries.
func TestConsumeBounded(t *testing.T) {
	js := singleNode(t)
	l := newLedger(t, ledger.Config{JetStream: js, Bucket: "GONE", Timeout: 300 * time.Millisecond})
	if err := js.DeleteKeyValue(t.Context(), "GONE"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		deadline time.Duration // 0: none
		want     time.Duration
	}{
		{"ledger timeout", 0, 300 * time.Millisecond},
		{"caller deadline sooner", 50 * time.Millisecond, 50 * time.Millisecond},
		{"caller deadline later", 5 * time.Second, 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			start := time.Now()
			err := l.Consume(ctx, key(tt.name), time.Minute, core.LedgerEntry{})
			took := time.Since(start)
			t.Logf("Consume with no bucket returned after %v: %v", took, err)
			if got := sentinel(t, err); got != core.ErrLedgerUnavailable {
				t.Fatalf("Consume = %v, want %v", err, core.ErrLedgerUnavailable)
			}
			if took > tt.want+250*time.Millisecond {
				t.Errorf("Consume took %v, want about %v", took, tt.want)
			}
		})
	}
}

// TestConsumeOutage stops the server under a running ledger, then restarts
// it on the same port and store: consumes fail closed, fast, and work again
// without a new Ledger; what was consumed before is still consumed.
func TestConsumeOutage(t *testing.T) {
	s := natstest.Server(t)
	nc := natstest.Connect(t, s.ClientURL())
	const timeout = 500 * time.Millisecond
	l := newLedger(t, ledger.Config{JetStream: natstest.JetStream(t, nc), Timeout: timeout})
	before := key("before")
	if err := l.Consume(t.Context(), before, time.Minute, core.LedgerEntry{}); err != nil {
		t.Fatalf("Consume before the outage = %v", err)
	}

	st := natstest.StopServer(t, s)
	for i := range 5 {
		start := time.Now()
		err := l.Consume(t.Context(), key("during"), time.Minute, core.LedgerEntry{})
		took := time.Since(start)
		t.Logf("Consume #%d during the outage: %v after %v", i+1, err, took)
		if got := sentinel(t, err); got != core.ErrLedgerUnavailable {
			t.Fatalf("Consume during the outage = %v, want %v", err, core.ErrLedgerUnavailable)
		}
		if took > timeout+250*time.Millisecond {
			t.Errorf("Consume during the outage took %v, want at most the %v timeout", took, timeout)
		}
	}
	if err := l.Ping(t.Context()); err == nil {
		t.Error("Ping during the outage = nil")
	}

	natstest.RestartServer(t, st)
	took := testwait.Until(t, 20*time.Second, "ledger working after the restart", bounded(t, func(ctx context.Context) error {
		err := l.Consume(ctx, key("after"), time.Minute, core.LedgerEntry{})
		if err != nil && sentinel(t, err) != core.ErrLedgerUnavailable {
			t.Fatalf("Consume after the restart = %v, want nil or %v", err, core.ErrLedgerUnavailable)
		}
		return err
	}))
	t.Logf("ledger working again %v after the restart", took)
	if err := l.Consume(t.Context(), before, time.Minute, core.LedgerEntry{}); sentinel(t, err) != core.ErrReplay {
		t.Errorf("Consume of a key from before the outage = %v, want %v", err, core.ErrReplay)
	}
	if err := l.Ping(t.Context()); err != nil {
		t.Errorf("Ping after the restart = %v", err)
	}
}

// TestConsumeClosedConnection: a closed connection is unavailable, at once.
func TestConsumeClosedConnection(t *testing.T) {
	s := natstest.Server(t)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	l := newLedger(t, ledger.Config{JetStream: js})
	nc.Close()
	err = l.Consume(t.Context(), key("closed"), time.Minute, core.LedgerEntry{})
	if got := sentinel(t, err); got != core.ErrLedgerUnavailable || !errors.Is(err, nats.ErrConnectionClosed) {
		t.Errorf("Consume on a closed connection = %v, want %v wrapping %v", err, core.ErrLedgerUnavailable, nats.ErrConnectionClosed)
	}
}
