package natsx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Connection options of a long-lived node.
const (
	// dialTimeout bounds each connection attempt, or ctx's deadline if sooner.
	dialTimeout = 2 * time.Second
	// reconnectWait and reconnectJitter space reconnect attempts so that a
	// restarted cluster is not hit by every node at the same instant.
	reconnectWait   = time.Second
	reconnectJitter = time.Second
	// pingInterval and maxPingsOut detect a stalled server, or one behind a
	// half-open TCP connection, 3 to 4 s after its last PONG (nats.go
	// declares the connection stale at the (maxPingsOut+1)-th unanswered
	// tick), so the connection fails over to another server within 5 s,
	// where 10 s x 3 took 31-35 s and denied every request meanwhile. Two
	// outstanding PINGs (2-3 s) were tried: on a loaded two-core test
	// machine PONGs queued behind a burst of a thousand requests arrived
	// late enough to drop healthy connections (TestClusterR3ExactlyOnce
	// failed 6 runs in 6), three never did. A PING a second per connection
	// costs the server nothing measurable.
	pingInterval = time.Second
	maxPingsOut  = 3
	// flusherTimeout bounds a write to the server's socket (nats.go's
	// default is a minute): a stalled server that stopped reading fails
	// the connection over instead of holding its writers, a forced
	// reconnect's final flush included (TimeoutWatch).
	flusherTimeout = 2 * time.Second
)

// The server list is randomised (nats.go shuffles it unless NoRandomize,
// which Connect never sets), so nodes given the same URLs spread over the
// servers, and each moves to a random other one when its server fails.

// Connect connects to the comma-separated NATS URLs as a long-lived node
// called name, without credentials: ConnectAuth with a nil ClientAuth.
func Connect(ctx context.Context, urls, name string, logger *slog.Logger) (*nats.Conn, error) {
	return ConnectAuth(ctx, urls, name, nil, logger)
}

// ConnectAuth connects to the comma-separated NATS URLs as a long-lived node
// called name, with auth's credentials and TLS (nil: none; auth must have
// been validated). If the first attempt fails for want of a server (refused,
// unreachable), it returns all the same and the connection keeps trying in
// the background forever, with jittered waits, so a node can start before
// NATS does (SPEC §8.2) and survive restarts of the cluster. If it fails on
// TLS or credentials, retrying cannot help: it returns a *ConnectError whose
// Permanent is true, naming the URL and the cause. Disconnects, reconnects
// and the final close are logged.
//
// While disconnected, publishes and requests fail at once instead of being
// buffered: a write whose caller already gave up (a ledger consume that
// timed out) must never reach JetStream later.
//
// ctx bounds the first attempt. Close the connection with DrainAndWait.
func ConnectAuth(ctx context.Context, urls, name string, auth *ClientAuth, logger *slog.Logger) (*nats.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("natsx: connect %s: %w", name, context.Cause(ctx))
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("nats_name", name)
	var lastUnreachable atomic.Int64 // unix nanos of the last "nats unreachable" line
	timeout := dialTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		nats.ReconnectJitter(reconnectJitter, reconnectJitter),
		nats.ReconnectBufSize(-1),
		// A revoked credential is refused at every reconnect until the
		// creds file is replaced (docs/NATS-SECURITY.md, rotation); nats.go
		// would otherwise close the connection for good on the second
		// identical auth error, and the node would need a restart.
		nats.IgnoreAuthErrorAbort(),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		nats.FlusherTimeout(flusherTimeout),
		nats.ConnectHandler(func(c *nats.Conn) {
			logger.Info("nats connected", "server", c.ConnectedUrlRedacted())
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			logger.Info("nats reconnected", "server", c.ConnectedUrlRedacted())
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			// TLS and credential failures need an operator (a rotated
			// certificate, an expired credential); a server that is
			// down does not.
			if k := classify(err); k == KindTLS || k == KindAuth {
				logger.Error("nats reconnect refused", "kind", k, "error", err)
				return
			}
			// Every failed attempt lands here, one per ReconnectWait while
			// the servers are down: the first, then one a minute.
			if now := time.Now(); now.Sub(time.Unix(0, lastUnreachable.Load())) >= time.Minute {
				lastUnreachable.Store(now.UnixNano())
				// nats.go says only "no servers available": probe for
				// the cause (bounded, once a minute at most).
				cause := errString(Unreachable(context.WithoutCancel(ctx), urls), err)
				logger.Warn("nats unreachable; still retrying", "url", RedactURLs(urls), "cause", cause)
			}
		}),
		nats.ClosedHandler(func(*nats.Conn) {
			logger.Info("nats connection closed")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				logger.Warn("nats async error", "subject", sub.Subject, "error", err)
				return
			}
			logger.Warn("nats async error", "error", err)
		}),
	}
	opts = append(opts, auth.Options()...)

	// The first attempt without background retries, to tell a server that
	// is not there yet from one that refuses us.
	nc, err := nats.Connect(urls, append(opts, nats.RetryOnFailedConnect(false))...)
	if err == nil {
		return nc, nil // the connect handler logged it
	}
	ce := NewConnectError(urls, err)
	if ce.Permanent() {
		return nil, ce
	}
	nc, err = nats.Connect(urls, append(opts, nats.RetryOnFailedConnect(true))...)
	if err != nil {
		// Only a bad URL list or option gets here; unreachable servers do not.
		return nil, fmt.Errorf("natsx: connect %s: %w", name, err)
	}
	if !nc.IsConnected() {
		// Name the servers and the cause here: what fails next (the first
		// publish: "outbound buffer limit exceeded") names neither.
		logger.Warn("nats not reachable yet, retrying in the background",
			"url", RedactURLs(urls), "cause", errString(Unreachable(ctx, urls), nc.LastError()))
	}
	return nc, nil
}

// DrainAndWait drains nc (subscriptions first, then pending publishes) and
// waits until the connection is closed, at most until ctx ends, because
// nats.Conn.Drain returns at once (STYLE §6). If ctx ends first, it closes nc
// without waiting further and returns ctx's error. A connection that is
// already closed is not an error.
//
// To learn when the drain ends it wraps nc's closed handler: the previous
// handler still runs, first.
func DrainAndWait(ctx context.Context, nc *nats.Conn) error {
	closed := make(chan struct{})
	prev := nc.ClosedHandler()
	nc.SetClosedHandler(func(c *nats.Conn) {
		if prev != nil {
			prev(c)
		}
		close(closed)
	})
	if err := nc.Drain(); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil
		}
		// While reconnecting nats.go closes instead of draining: say so,
		// since what was pending is lost.
		return fmt.Errorf("natsx: drain: %w", err)
	}
	select {
	case <-closed:
		if err := nc.LastError(); errors.Is(err, nats.ErrDrainTimeout) {
			return fmt.Errorf("natsx: drain: %w", err)
		}
		return nil
	case <-ctx.Done():
		nc.Close()
		return fmt.Errorf("natsx: drain: %w", context.Cause(ctx))
	}
}

// errString is the first non-nil error's text, or "unknown".
func errString(errs ...error) string {
	for _, err := range errs {
		if err != nil {
			return err.Error()
		}
	}
	return "unknown"
}
