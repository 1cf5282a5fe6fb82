package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// ErrLeaderElected is the cause of a write ended early because the
// ledger's stream elected a new leader while it was in flight. It comes
// wrapped with core.ErrLedgerUnavailable.
var ErrLeaderElected = errors.New("the ledger stream elected a new leader while the write was in flight")

// advisoryLeaderElected prefixes the subject on which JetStream announces a
// stream's new leader (nats-server: JSAdvisoryStreamLeaderElectedPre).
const advisoryLeaderElected = "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED."

// electionCut ends the writes still unanswered a grace period after the
// stream elects a new leader. When the old leader stalled or was cut off
// (the others stopped hearing from it), the writes sent to it will never be
// answered: each would wait out the whole ledger timeout, so that the first
// allow after a failover came up to one timeout (2 s) after the election.
// Ended, they are denied replay_ledger_unavailable (503, which a caller
// answers by signing again: a write may still land, SPEC §7), and the next
// request goes to the new leader. The grace period is for a healthy change
// of leader (the first election of a new stream, a step-down): the writes
// in flight then are answered, within milliseconds, and must not be ended
// (TestClusterR3ExactlyOnce saw them ended when the cut was immediate). A
// write still unanswered after it is ended: a 503, never an allow.
type electionCut struct {
	mu       sync.Mutex
	watching bool                               // guarded by mu
	next     uint64                             // guarded by mu
	inflight map[uint64]context.CancelCauseFunc // guarded by mu; the writes in flight
	timers   map[*time.Timer]struct{}           // guarded by mu; grace periods running
	sub      *nats.Subscription                 // guarded by mu
	count    atomic.Int64                       // elections seen
}

// electionGrace is how long after an election a write in flight may still
// be answered before it is ended: a quarter of the ledger's timeout
// (500 ms at the default 2 s).
func (l *Ledger) electionGrace() time.Duration { return l.timeout / 4 }

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
	e.sub, e.watching = sub, true
	e.inflight, e.timers = map[uint64]context.CancelCauseFunc{}, map[*time.Timer]struct{}{}
	e.mu.Unlock()
	return nil
}

// elected ends, after the grace period, the writes in flight now that are
// still unanswered then.
func (l *Ledger) elected() {
	l.elections.count.Add(1)
	e := &l.elections
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.watching {
		return
	}
	ids := make([]uint64, 0, len(e.inflight))
	for id := range e.inflight {
		ids = append(ids, id)
	}
	var t *time.Timer
	t = time.AfterFunc(l.electionGrace(), func() {
		e.mu.Lock()
		delete(e.timers, t)
		ended := make([]context.CancelCauseFunc, 0, len(ids))
		for _, id := range ids {
			if cancel, ok := e.inflight[id]; ok {
				ended = append(ended, cancel)
				delete(e.inflight, id)
			}
		}
		e.mu.Unlock()
		for _, cancel := range ended {
			cancel(ErrLeaderElected)
		}
		if len(ended) > 0 {
			l.log.Info("ledger stream elected a new leader; writes the old one never answered are ended",
				"stream", l.acks.stream, "ended", len(ended), "grace", l.electionGrace())
		}
	})
	e.timers[t] = struct{}{}
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

// unwatchElections ends the subscription and the grace periods running.
func (l *Ledger) unwatchElections() error {
	e := &l.elections
	e.mu.Lock()
	sub := e.sub
	e.sub, e.watching = nil, false
	for t := range e.timers {
		t.Stop()
	}
	clear(e.timers)
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
