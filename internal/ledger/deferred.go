package ledger

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/tpcluster/tpcluster/internal/core"
)

// Replay is a replay ledger a node decides with: core's contract plus the
// readiness checks. *Ledger and *Regional implement it.
type Replay interface {
	core.Ledger
	// Ping reports whether the ledger's bucket answers.
	Ping(ctx context.Context) error
	// Probe writes the node's probe key: whether the ledger takes writes
	// (Health).
	Probe(ctx context.Context) error
}

// ErrNotOpen is what a Deferred answers until its ledger is open. It
// matches core.ErrLedgerUnavailable, so a request that passed every other
// check is denied replay_ledger_unavailable, never allowed.
var ErrNotOpen = fmt.Errorf("ledger: bucket not open yet: %w", core.ErrLedgerUnavailable)

// Deferred is a replay ledger a node can serve with before its bucket can
// be opened: in NATS bundle mode a node decides from its cached bundle pair
// before NATS answers (SPEC §8.2). Until Run has opened the ledger, Consume,
// Ping and Probe return ErrNotOpen; then they go to the opened ledger. It
// implements Replay and is safe for concurrent use; it starts no
// goroutines (its owner runs Run).
type Deferred struct {
	open func(context.Context) (Replay, error)
	cur  atomic.Pointer[replayBox] // nil until open succeeded
}

// replayBox holds the opened ledger: atomic.Pointer needs a concrete type.
type replayBox struct{ Replay }

// NewDeferred returns a Deferred whose Run opens the ledger with open. open
// should keep trying until it succeeds or its context is done (the node's
// open retries with a jittered back-off), since Run calls it once.
func NewDeferred(open func(context.Context) (Replay, error)) *Deferred {
	return &Deferred{open: open}
}

// Consume implements core.Ledger: ErrNotOpen until the ledger is open.
func (d *Deferred) Consume(ctx context.Context, key core.LedgerKey, ttl time.Duration, e core.LedgerEntry) error {
	if b := d.cur.Load(); b != nil {
		return b.Consume(ctx, key, ttl, e)
	}
	return ErrNotOpen
}

// Ping returns ErrNotOpen until the ledger is open, then the ledger's Ping.
func (d *Deferred) Ping(ctx context.Context) error {
	if b := d.cur.Load(); b != nil {
		return b.Ping(ctx)
	}
	return ErrNotOpen
}

// Probe returns ErrNotOpen until the ledger is open, then the ledger's
// Probe.
func (d *Deferred) Probe(ctx context.Context) error {
	if b := d.cur.Load(); b != nil {
		return b.Probe(ctx)
	}
	return ErrNotOpen
}

// Run opens the ledger and swaps it in. It returns nil once the ledger is
// open, or open's error (the ledger then stays ErrNotOpen); it is called
// once.
func (d *Deferred) Run(ctx context.Context) error {
	led, err := d.open(ctx)
	if err != nil {
		return fmt.Errorf("ledger: open: %w", err)
	}
	d.cur.Store(&replayBox{led})
	return nil
}
