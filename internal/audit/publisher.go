package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"

	"github.com/tpcluster/tpcluster/internal/retry"
)

// PublisherConfig configures a Publisher. Zero values are documented per
// field.
type PublisherConfig struct {
	// Spool is the log to publish. Required.
	Spool *Spool
	// Conn is the node's NATS connection. Required. Its reconnect buffer
	// should be off (natsx.Connect): then a publish while disconnected
	// fails at once and is retried from the spool.
	Conn *nats.Conn
	// Stream is re-ensured when JetStream says no stream takes the
	// subjects (someone deleted it).
	Stream StreamConfig
	// Window bounds the asynchronous publishes awaiting an
	// acknowledgement. If zero, 256.
	Window int
	// AckTimeout bounds the wait for one acknowledgement. If zero, 5s.
	AckTimeout time.Duration
	// MinBackoff and MaxBackoff bound the jittered wait between retries
	// while NATS fails. If zero, 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
	// MeterProvider; nil means no-op.
	MeterProvider metric.MeterProvider
}

// Publisher sends the spool to JetStream in order (SPEC §9). Run owns its
// one goroutine's work; Flush waits for it to catch up.
type Publisher struct {
	cfg   PublisherConfig
	spool *Spool
	js    jetstream.JetStream
	log   *slog.Logger
	met   *publisherMetrics

	oldest   atomic.Int64  // appended_at (Unix ns) of the oldest unacknowledged event read, 0 if none
	progress chan struct{} // cap 1: acknowledgements were recorded
	running  sync.Mutex    // held by Run
}

// pending is one event sent (or to be sent) and not yet acknowledged.
type pending struct {
	pos  uint64
	at   int64 // appended_at, Unix ns
	msg  *nats.Msg
	fut  jetstream.PubAckFuture
	sent time.Time
}

// NewPublisher checks cfg and returns a Publisher. Nothing runs until Run.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if cfg.Spool == nil || cfg.Conn == nil {
		return nil, errors.New("audit: publisher needs a spool and a NATS connection")
	}
	if cfg.Window < 0 || cfg.AckTimeout < 0 || cfg.MinBackoff < 0 || cfg.MaxBackoff < 0 {
		return nil, errors.New("audit: negative publisher setting")
	}
	if cfg.Window == 0 {
		cfg.Window = 256
	}
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = 5 * time.Second
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// A JetStream handle of our own, so the window and timeout apply to
	// audit publishes only.
	js, err := jetstream.New(cfg.Conn,
		jetstream.WithPublishAsyncMaxPending(cfg.Window),
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("audit: jetstream: %w", err)
	}
	p := &Publisher{cfg: cfg, spool: cfg.Spool, js: js, log: cfg.Logger, progress: make(chan struct{}, 1)}
	if p.met, err = newPublisherMetrics(cfg.MeterProvider, p); err != nil {
		return nil, fmt.Errorf("audit: metrics: %w", err)
	}
	return p, nil
}

// Run publishes until ctx is done, then returns nil. Events in flight when
// ctx ends stay in the spool and are sent again by the next Run; the
// duplicate window (Nats-Msg-Id = event_id) keeps JetStream from storing
// them twice. Call Flush first to finish them. Only one Run at a time.
func (p *Publisher) Run(ctx context.Context) error {
	if !p.running.TryLock() {
		return errors.New("audit: publisher already running")
	}
	defer p.running.Unlock()
	r := newReader(p.spool, p.spool.ackedPos.Load()+1)
	defer r.close()

	var (
		inflight []*pending // sent, in pos order
		resend   []*pending // to send again, in pos order, before reading more
		acked    uint64     // highest acknowledged pos not yet given to the spool
		fails    int        // consecutive failures, for the log
		bo       = retry.Backoff{Min: p.cfg.MinBackoff, Max: p.cfg.MaxBackoff}
	)
	flushAcks := func() {
		if acked != 0 {
			p.spool.ack(acked)
			acked = 0
			select {
			case p.progress <- struct{}{}:
			default:
			}
		}
	}
	defer flushAcks()
	for {
		if ctx.Err() != nil {
			return nil
		}
		// Fill the window, resends first: the stream sees each node's
		// events in node_seq order.
		sendErr, damaged := error(nil), false
		for len(inflight) < p.cfg.Window {
			var pm *pending
			if len(resend) > 0 {
				pm = resend[0]
			} else {
				rec, ok, err := r.Next()
				if err != nil {
					// Damage the reader cannot pass: an operator must
					// act. The spool keeps growing, then fails closed.
					sendErr, damaged = fmt.Errorf("read spool: %w", err), true
					break
				}
				if !ok {
					break
				}
				pm = &pending{pos: rec.pos, at: rec.appendedAt, msg: &nats.Msg{
					Subject: rec.subject,
					Data:    append([]byte(nil), rec.data...),
					// SPEC §9: a resend of the same event is never
					// stored twice within the duplicate window.
					Header: nats.Header{jetstream.MsgIDHeader: []string{rec.eventID}},
				}}
				resend = append(resend, pm)
			}
			fut, err := p.js.PublishMsgAsync(pm.msg)
			if err != nil {
				sendErr = err
				break
			}
			resend = resend[1:]
			pm.fut, pm.sent = fut, time.Now()
			inflight = append(inflight, pm)
		}
		p.setOldest(inflight, resend)
		if sendErr == nil && len(inflight) == 0 {
			flushAcks()
			select {
			case <-ctx.Done():
				return nil
			case <-p.spool.appended:
			case <-time.After(time.Second): // a lost wake-up costs at most this
			}
			continue
		}
		if sendErr == nil {
			head := inflight[0]
			select {
			case ack := <-head.fut.Ok():
				inflight = inflight[1:]
				acked = head.pos
				fails = 0
				bo.Reset()
				p.met.published(ctx, time.Since(head.sent), ack.Duplicate)
				if len(inflight) == 0 || head.pos%64 == 0 {
					flushAcks()
				}
				continue
			case err := <-head.fut.Err():
				sendErr = err
				// Its one outcome was just received: settle must not
				// wait AckTimeout for another.
				head.fut = nil
			case <-ctx.Done():
				return nil
			}
		}
		// Go back: settle everything in flight (so an old attempt is not
		// stored after its resend), keep the acknowledged prefix, send
		// everything from the first failure again, in order.
		firstFailed := len(inflight)
		for i, pm := range inflight {
			if !p.settle(ctx, pm) && firstFailed == len(inflight) {
				firstFailed = i
			}
		}
		for _, pm := range inflight[:firstFailed] {
			acked = pm.pos
			p.met.published(ctx, time.Since(pm.sent), false)
		}
		settled := inflight[firstFailed:]
		for _, pm := range settled {
			pm.fut = nil
		}
		resend = append(append([]*pending(nil), settled...), resend...)
		inflight = inflight[:0]
		flushAcks()
		p.met.failures.Add(ctx, 1)
		fails++
		switch {
		case damaged && (fails == 1 || fails%50 == 0):
			p.log.Error("audit spool unreadable; publishing stopped, the spool will fill and the node fail closed",
				"err", sendErr, "pending", p.spool.Pending())
		case fails == 1 || fails%50 == 0:
			p.log.Warn("audit publish failed; events stay in the spool and are retried",
				"err", sendErr, "pending", p.spool.Pending(), "spool_bytes", p.spool.Bytes())
		}
		if errors.Is(sendErr, jetstream.ErrNoStreamResponse) || errors.Is(sendErr, nats.ErrNoResponders) {
			ectx, cancel := context.WithTimeout(ctx, p.cfg.AckTimeout)
			if err := EnsureStream(ectx, p.js, p.cfg.Stream, p.log); err != nil && fails == 1 {
				p.log.Warn("audit stream not available", "err", err)
			}
			cancel()
		}
		if !retry.Sleep(ctx, bo.Next()) {
			return nil
		}
	}
}

// settle waits for pm's outcome and reports whether it was acknowledged.
func (p *Publisher) settle(ctx context.Context, pm *pending) bool {
	if pm.fut == nil {
		return false
	}
	t := time.NewTimer(p.cfg.AckTimeout)
	defer t.Stop()
	select {
	case <-pm.fut.Ok():
		return true
	case <-pm.fut.Err():
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

func (p *Publisher) setOldest(inflight, resend []*pending) {
	switch {
	case len(inflight) > 0:
		p.oldest.Store(inflight[0].at)
	case len(resend) > 0:
		p.oldest.Store(resend[0].at)
	default:
		p.oldest.Store(0)
	}
}

// Flush waits until every event appended so far is acknowledged by
// JetStream, or ctx ends (then it returns ctx's error and the rest stays in
// the spool). Run must be running.
func (p *Publisher) Flush(ctx context.Context) error {
	target := p.spool.lastPos.Load()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for p.spool.ackedPos.Load() < target {
		select {
		case <-ctx.Done():
			return fmt.Errorf("audit: flush: %d events left in the spool: %w", target-p.spool.ackedPos.Load(), context.Cause(ctx))
		case <-p.progress:
		case <-t.C:
		}
	}
	return nil
}
