package natsx_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// TestTimeoutWatch: request timeouts move the connection to another server
// once three came in a row and nothing answered for 3s. An answer in
// between resets the count; timeouts in a burst while answers keep coming
// (a loaded server) do not force; a second burst right after a forced
// reconnect does not force another.
func TestTimeoutWatch(t *testing.T) {
	a, b := natstest.Server(t), natstest.Server(t)
	nc := natstest.Connect(t, a.ClientURL(), b.ClientURL())
	w := natsx.NewTimeoutWatch(nc, nil)
	var mu sync.Mutex
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	natsx.SetTimeoutWatchClock(w, func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	timeout := fmt.Errorf("ledger: consume: %w", context.DeadlineExceeded)

	advance(5 * time.Second)
	w.Observe(timeout)
	w.Observe(timeout)
	w.Observe(errors.New("nats: API error: wrong last sequence")) // the server answered
	w.Observe(timeout)
	w.Observe(timeout)
	if n := w.Forced(); n != 0 {
		t.Fatalf("forced %d reconnects after an answer reset the count, want 0", n)
	}
	advance(time.Second)
	w.Observe(timeout) // three in a row, but an answer came 1s ago
	if n := w.Forced(); n != 0 {
		t.Fatalf("forced %d reconnects 1s after an answer, want 0", n)
	}
	if n := nc.Stats().Reconnects; n != 0 {
		t.Fatalf("%d reconnects before any was forced", n)
	}

	advance(2 * time.Second)
	w.Observe(nats.ErrTimeout) // the fourth in a row, 3s of silence
	if n := w.Forced(); n != 1 {
		t.Fatalf("forced %d reconnects after three timeouts in a row, want 1", n)
	}
	testwait.Until(t, 30*time.Second, "the forced reconnect", func() error {
		if nc.Stats().Reconnects == 0 || !nc.IsConnected() {
			return fmt.Errorf("%d reconnects, status %v", nc.Stats().Reconnects, nc.Status())
		}
		return nil
	})
	for range 3 {
		w.Observe(timeout)
	}
	if n := w.Forced(); n != 1 {
		t.Errorf("forced %d reconnects, want 1: another within the gap", n)
	}
}
