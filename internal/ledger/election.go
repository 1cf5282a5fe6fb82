package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// ErrLeaderElected is the cause of a write ended early because the
// ledger's stream elected a new leader while it was in flight. It comes
// wrapped with core.ErrLedgerUnavailable.
var ErrLeaderElected = errors.New("the ledger stream elected a new leader while the write was in flight")

// advisoryLeaderElected prefixes the subject on which JetStream announces a
// stream's new leader (nats-server: JSAdvisoryStreamLeaderElectedPre).
const advisoryLeaderElected = "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED."

// electionCut ends the writes in flight when the stream elects a new
// leader. They were sent to the old leader, which stalled or was cut off
// (an election means the others stopped hearing from it) and will not
// answer: each would wait out the whole ledger timeout, so that the first
// allow after a failover came up to one timeout (2 s) after the election.
// Ended at once, they are denied replay_ledger_unavailable (503, which a
// caller answers by signing again: a write may still land, SPEC §7), and
// the next request goes to the new leader. A write that the new leader
// would have answered (one sent in the instant of the election) is denied
// too: a 503, never an allow.
type electionCut struct {
	mu       sync.Mutex
	watching bool                               // guarded by mu
	next     uint64                             // guarded by mu
	inflight map[uint64]context.CancelCauseFunc // guarded by mu; the writes in flight
	sub      *nats.Subscription                 // guarded by mu
	count    atomic.Int64                       // elections seen
}

// watchElections subscribes to the stream's leader-elected advisory. The
// subscription lives on the ledger's connection (nats.go renews it after a
// reconnect) until Close.
func (l *Ledger) watchElections(nc *nats.Conn) error {
	sub, err := nc.Subscribe(advisoryLeaderElected+l.acks.stream, func(*nats.Msg) { l.elected() })
	if err != nil {
		return fmt.Errorf("subscribe to the stream's leader elections: %w", err)
	}
	e := &l.elections
	e.mu.Lock()
	e.sub, e.watching, e.inflight = sub, true, map[uint64]context.CancelCauseFunc{}
	e.mu.Unlock()
	return nil
}

// elected ends every write in flight.
func (l *Ledger) elected() {
	e := &l.elections
	e.mu.Lock()
	ended := make([]context.CancelCauseFunc, 0, len(e.inflight))
	for id, cancel := range e.inflight {
		ended = append(ended, cancel)
		delete(e.inflight, id)
	}
	e.mu.Unlock()
	for _, cancel := range ended {
		cancel(ErrLeaderElected)
	}
	l.elections.count.Add(1)
	l.log.Info("ledger stream elected a new leader; writes in flight to the old one are ended",
		"stream", l.acks.stream, "ended", len(ended))
}

// inFlight returns ctx ended, with cause ErrLeaderElected, by the next
// election, and the function to call as soon as the write has its answer
// (it ends the returned ctx).
func (l *Ledger) inFlight(ctx context.Context) (context.Context, func()) {
	e := &l.elections
	ctx, cancel := context.WithCancelCause(ctx)
	e.mu.Lock()
	if !e.watching {
		e.mu.Unlock()
		return ctx, func() { cancel(nil) }
	}
	id := e.next
	e.next++
	e.inflight[id] = cancel
	e.mu.Unlock()
	return ctx, func() {
		e.mu.Lock()
		delete(e.inflight, id)
		e.mu.Unlock()
		cancel(nil)
	}
}

// unwatchElections ends the subscription.
func (l *Ledger) unwatchElections() error {
	e := &l.elections
	e.mu.Lock()
	sub := e.sub
	e.sub, e.watching = nil, false
	e.mu.Unlock()
	if sub == nil {
		return nil
	}
	return sub.Unsubscribe()
}

// Elections returns how many leader elections of its stream the ledger has
// seen, for tests and logs.
func (l *Ledger) Elections() int64 { return l.elections.count.Load() }

// electedCause returns err saying ErrLeaderElected if that is why ctx
// ended; otherwise err.
func electedCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, ErrLeaderElected) {
		return fmt.Errorf("%w: %w", cause, err)
	}
	return err
}
