package ledger_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/ledger"
)

var _ ledger.Replay = (*ledger.Deferred)(nil)

// TestDeferredOpensInTheBackground: until Run has opened the ledger on a
// real server, every consume is ErrLedgerUnavailable (never nil) and Ping
// fails; consumes racing the swap get one of the two sentinels or nil;
// afterwards the opened ledger answers, exactly once per key.
func TestDeferredOpensInTheBackground(t *testing.T) {
	js := singleNode(t)
	gate := make(chan struct{})
	d := ledger.NewDeferred(func(ctx context.Context) (ledger.Replay, error) {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return newLedger(t, ledger.Config{JetStream: js}), nil
	})

	if err := d.Consume(t.Context(), key("early"), time.Minute, core.LedgerEntry{}); sentinel(t, err) != core.ErrLedgerUnavailable || !errors.Is(err, ledger.ErrNotOpen) {
		t.Fatalf("Consume before Run = %v, want %v", err, ledger.ErrNotOpen)
	}
	if err := d.Ping(t.Context()); !errors.Is(err, core.ErrLedgerUnavailable) {
		t.Fatalf("Ping before Run = %v, want %v", err, core.ErrLedgerUnavailable)
	}
	if err := d.Probe(t.Context()); !errors.Is(err, ledger.ErrNotOpen) {
		t.Fatalf("Probe before Run = %v, want %v", err, ledger.ErrNotOpen)
	}

	ran := make(chan error, 1)
	go func() { ran <- d.Run(t.Context()) }()
	// Consumes while the ledger opens, for the race detector: each key once,
	// so any result but a replay is within the contract.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				err := d.Consume(t.Context(), key(string(rune('a'+i))+string(rune('a'+j))), time.Minute, core.LedgerEntry{})
				if err != nil && sentinel(t, err) != core.ErrLedgerUnavailable {
					t.Errorf("Consume while opening = %v, want nil or %v", err, core.ErrLedgerUnavailable)
				}
			}
		})
	}
	close(gate)
	wg.Wait()
	if err := <-ran; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}

	if err := d.Ping(t.Context()); err != nil {
		t.Errorf("Ping after Run = %v, want nil", err)
	}
	if err := d.Probe(t.Context()); err != nil {
		t.Errorf("Probe after Run = %v, want nil", err)
	}
	if err := d.Consume(t.Context(), key("late"), time.Minute, core.LedgerEntry{}); err != nil {
		t.Fatalf("first Consume after Run = %v, want nil", err)
	}
	if err := d.Consume(t.Context(), key("late"), time.Minute, core.LedgerEntry{}); sentinel(t, err) != core.ErrReplay {
		t.Errorf("second Consume after Run = %v, want %v", err, core.ErrReplay)
	}
}

// TestDeferredOpenFails: an open that gives up (its context ended before
// NATS answered) leaves the ledger unavailable, and Run says why.
func TestDeferredOpenFails(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	d := ledger.NewDeferred(func(ctx context.Context) (ledger.Replay, error) {
		<-ctx.Done()
		return nil, context.Cause(ctx)
	})
	cancel()
	if err := d.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Run with a cancelled open = %v, want %v", err, context.Canceled)
	}
	if err := d.Consume(t.Context(), key("never"), time.Minute, core.LedgerEntry{}); sentinel(t, err) != core.ErrLedgerUnavailable {
		t.Errorf("Consume after a failed Run = %v, want %v", err, core.ErrLedgerUnavailable)
	}
	if err := d.Ping(t.Context()); !errors.Is(err, ledger.ErrNotOpen) {
		t.Errorf("Ping after a failed Run = %v, want %v", err, ledger.ErrNotOpen)
	}
}
