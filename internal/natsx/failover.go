package natsx

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Failover of a connection whose server still answers PINGs but not
// requests (cut off from its cluster): after failoverTimeouts request
// timeouts in a row, and no answer at all for failoverSilence, the
// connection is moved to another server, at most once per failoverGap.
// The silence keeps a merely loaded server, whose answers keep coming
// between the timeouts of a burst, from being left: a forced reconnect
// fails every request in flight on the connection.
const (
	failoverTimeouts = 3
	failoverSilence  = 3 * time.Second
	failoverGap      = 5 * time.Second
)

// TimeoutWatch forces a connection over to another server after repeated
// request timeouts (a stalled or cut-off server held every node
// connected to it until the client's ping timeout). PINGs catch a server
// that stopped altogether; the watch catches one that answers PINGs while
// its requests time out. Its methods are safe for concurrent use; it starts
// no goroutine.
type TimeoutWatch struct {
	nc  *nats.Conn
	log *slog.Logger
	now func() time.Time

	consecutive atomic.Int64 // timeouts since the last answer
	answered    atomic.Int64 // Unix ns of the last answer (or of creation)
	last        atomic.Int64 // Unix ns of the last forced reconnect
	forced      atomic.Int64 // forced reconnects, for tests and logs
}

// NewTimeoutWatch watches requests made on nc. A nil logger discards.
func NewTimeoutWatch(nc *nats.Conn, logger *slog.Logger) *TimeoutWatch {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &TimeoutWatch{nc: nc, log: logger, now: time.Now}
	w.answered.Store(w.now().UnixNano())
	return w
}

// Observe records the outcome of one request on the connection: a timeout
// counts, any other outcome (an answer, an error from the server) resets
// the count, since the server answered. A timeout that is at least the
// failoverTimeouts-th in a row, failoverSilence after the last answer,
// forces a reconnect to another server, unless one was forced less than
// failoverGap ago. The caller that forces it waits for nats.go to flush
// what is buffered to the old server, at most Connect's write timeout (2s).
func (w *TimeoutWatch) Observe(err error) {
	now := w.now().UnixNano()
	if !IsTimeout(err) {
		w.answered.Store(now)
		if w.consecutive.Load() != 0 {
			w.consecutive.Store(0)
		}
		return
	}
	n := w.consecutive.Add(1)
	if n < failoverTimeouts || now-w.answered.Load() < int64(failoverSilence) {
		return
	}
	last := w.last.Load()
	if now-last < int64(failoverGap) || !w.last.CompareAndSwap(last, now) {
		return
	}
	w.forced.Add(1)
	w.consecutive.Store(0)
	w.log.Warn("nats requests keep timing out; moving the connection to another server",
		"server", w.nc.ConnectedUrlRedacted(), "timeouts", n, "silence", time.Duration(now-w.answered.Load()))
	if err := w.nc.ForceReconnect(); err != nil {
		w.log.Warn("nats forced reconnect failed", "error", err)
	}
}

// Forced returns how many reconnects the watch has forced.
func (w *TimeoutWatch) Forced() int64 { return w.forced.Load() }

// IsTimeout reports whether err is a request that got no answer in time.
func IsTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
}
