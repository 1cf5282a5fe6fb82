package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/core"
)

// ProbeToken is the first token of the probe keys in the replay bucket:
// $KV.<bucket>.probe.<node>.<unique>. A consumed jti's key is a single token
// of 64 lowercase hex digits, so a subject of three tokens starting with
// "probe" can never be one, whatever the node is called. A node that may
// consume may publish under $KV.<bucket>.>, so the probe needs no
// permission of its own.
const ProbeToken = "probe"

// probeTTL is how long a probe key stays in the bucket. Every probe writes
// a key of its own: the locked ledger stream refuses a second message on a
// subject, as it must for jti keys, so a probe that rewrote one key would
// fail from its second write on. The TTL removes each key; a node keeps
// about probeTTL/interval of them.
const probeTTL = 10 * time.Second

// Probe writes the node's probe key, bounded by the ledger's timeout and
// ctx. It is the honest test of whether this node can consume a jti right
// now: like a consume, the write is acknowledged only once the stream's
// leader has it stored on a quorum of replicas. A stream info request is
// not: a leader cut off from its peers still calls itself leader and
// answers it. The error wraps core.ErrLedgerUnavailable.
func (l *Ledger) Probe(ctx context.Context) error {
	msg := &nats.Msg{
		Subject: l.subjectPrefix + ProbeToken + "." + subjectToken(l.node) + "." +
			strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatUint(l.probes.Add(1), 10),
		Header: nats.Header{
			jetstream.MsgTTLHeader: {strconv.Itoa(int(probeTTL/time.Second)) + "s"},
		},
		Data: appendEntry(make([]byte, 0, 96), l.node, l.now(), ""),
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	// Ended by an election like a consume, so that readyz turns 200 with
	// the first probe after it rather than a timeout later.
	ctx, done := l.inFlight(ctx)
	defer done()
	if _, err := l.js.PublishMsg(ctx, msg); err != nil {
		err = electedCause(ctx, err)
		return fmt.Errorf("ledger: probe write to bucket %s: %w: %w", l.bucket, core.ErrLedgerUnavailable, err)
	}
	return nil
}

// subjectToken makes s one NATS subject token: anything but letters,
// digits, - and _ becomes _, and an empty s becomes "node".
func subjectToken(s string) string {
	if s == "" {
		return "node"
	}
	b := []byte(s)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// Probed is a replay ledger that can also prove it takes writes: *Ledger,
// *Regional, or a node's wrapper around one.
type Probed interface {
	core.Ledger
	Probe(ctx context.Context) error
}

// HealthConfig configures a Health.
type HealthConfig struct {
	// Ledger is the ledger consumes go to and probes are written to.
	// Required.
	Ledger Probed
	// Interval is the time between the end of one probe and the start of
	// the next. If zero, 500ms.
	Interval time.Duration
	// Timeout bounds one probe. If zero, 1s. With Interval, it bounds how
	// long Err keeps reporting a ledger that stopped taking writes as
	// healthy: Interval plus Timeout (1.5s by default).
	Timeout time.Duration
	// Threshold is how many consecutive consumes ending
	// core.ErrLedgerUnavailable (replays not counted, see Observe) make the
	// ledger unhealthy before the next probe says so. If zero, 3.
	Threshold int
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
	// Logger receives a message on each change of state. If nil, they are
	// discarded.
	Logger *slog.Logger
}

// Health tracks whether a node's replay ledger takes writes, from two
// sources: a probe write every Interval (Run) and the outcomes of real
// consumes (Consume). Err reads the latest state and never blocks, so a
// readiness check built on it answers at once whatever NATS does. Health
// implements core.Ledger by passing consumes to the ledger. Its methods are
// safe for concurrent use; Run owns its only goroutine (the caller's).
type Health struct {
	cfg        HealthConfig
	fails      atomic.Int64 // consecutive consumes that ended unavailable
	consumeBad atomic.Bool  // consumeErr != nil, read without mu on the consume path

	mu         sync.Mutex
	probeErr   error     // guarded by mu; the last probe's error
	consumeErr error     // guarded by mu; set by a run of failed consumes
	probeAt    time.Time // guarded by mu; when the last probe ended, zero before the first
	reported   error     // guarded by mu; the state last logged
}

// errNoProbe is the state before the first probe ends.
var errNoProbe = errors.New("ledger: no probe write has completed yet")

// NewHealth returns a Health, unhealthy until its first probe succeeds.
func NewHealth(cfg HealthConfig) (*Health, error) {
	if cfg.Ledger == nil {
		return nil, errors.New("ledger: health: Ledger is required")
	}
	if cfg.Interval < 0 || cfg.Timeout < 0 || cfg.Threshold < 0 {
		return nil, fmt.Errorf("ledger: health: interval %v, timeout %v, threshold %d: must not be negative", cfg.Interval, cfg.Timeout, cfg.Threshold)
	}
	if cfg.Interval == 0 {
		cfg.Interval = 500 * time.Millisecond
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Threshold == 0 {
		cfg.Threshold = 3
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Health{cfg: cfg, probeErr: errNoProbe, reported: errNoProbe}, nil
}

// Consume implements core.Ledger: it consumes through the ledger and
// records the outcome (Observe).
func (h *Health) Consume(ctx context.Context, key core.LedgerKey, ttl time.Duration, e core.LedgerEntry) error {
	err := h.cfg.Ledger.Consume(ctx, key, ttl, e)
	h.Observe(err)
	return err
}

// Observe records the outcome of one consume made elsewhere. Threshold
// consecutive core.ErrLedgerUnavailable outcomes make the ledger unhealthy
// until a consume creates a key or a probe succeeds. A created key ends the
// run but does not overrule a failed probe: with several shards it proves
// only its own shard. A replay proves nothing either way: a leader cut off
// from its peers still refuses a create from its own store or its pending
// proposals, without asking them (seen in the fault suite), so it neither
// ends a run nor extends one.
func (h *Health) Observe(err error) {
	switch {
	case err == nil:
		if h.fails.Swap(0) != 0 || h.consumeBad.Load() {
			h.update(func() { h.consumeErr = nil })
		}
	case errors.Is(err, core.ErrLedgerUnavailable):
		if n := h.fails.Add(1); n >= int64(h.cfg.Threshold) {
			h.update(func() { h.consumeErr = fmt.Errorf("%d consecutive consumes failed, the last: %w", n, err) })
		}
	}
}

// Err returns nil if the ledger takes writes, or why not: the last probe
// failed, a run of consumes failed since, or no probe has completed for
// Interval+Timeout and one more Interval (Run stopped or stuck).
func (h *Health) Err() error {
	h.mu.Lock()
	err, at := h.stateLocked(), h.probeAt
	h.mu.Unlock()
	if err != nil {
		return err
	}
	if late := h.cfg.Now().Sub(at) - (h.cfg.Interval + h.cfg.Timeout); late > h.cfg.Interval {
		return fmt.Errorf("ledger: no probe write has completed for %v", (h.cfg.Interval + h.cfg.Timeout + late).Round(time.Millisecond))
	}
	return nil
}

// stateLocked is the recorded state: the probe's error first.
func (h *Health) stateLocked() error {
	if h.probeErr != nil {
		return h.probeErr
	}
	return h.consumeErr
}

// Check is Err as a readiness check: ctx is unused, it never blocks.
func (h *Health) Check(context.Context) error { return h.Err() }

// Run probes the ledger every Interval until ctx is done, then returns nil.
// A successful probe also ends a run of failed consumes: every shard took a
// write.
func (h *Health) Run(ctx context.Context) error {
	for {
		pctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
		err := h.cfg.Ledger.Probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			h.fails.Store(0)
		}
		h.update(func() {
			h.probeErr, h.probeAt = err, h.cfg.Now()
			if err == nil {
				h.consumeErr = nil
			}
		})
		t := time.NewTimer(h.cfg.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// update applies change under mu and logs a change of state after.
func (h *Health) update(change func()) {
	h.mu.Lock()
	change()
	h.consumeBad.Store(h.consumeErr != nil)
	now, was := h.stateLocked(), h.reported
	h.reported = now
	h.mu.Unlock()
	switch {
	case was == nil && now != nil:
		h.cfg.Logger.Warn("replay ledger cannot take writes; node unready", "err", now)
	case was != nil && now == nil:
		h.cfg.Logger.Info("replay ledger takes writes again")
	}
}
