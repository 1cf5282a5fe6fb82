package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
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
	// SignKey is the node's audit key (docs/AUDIT.md): every event is
	// sent with its signature in SignatureHeader, and checkpoints are
	// published. If nil, events go unsigned and no checkpoint is
	// published, and tpaudit verify reports every event of the node.
	SignKey ed25519.PrivateKey
	// CheckpointInterval is how often a checkpoint of the acknowledged
	// chain head is published while the node runs (one is also published
	// when Run ends). If zero, 30s.
	CheckpointInterval time.Duration
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

	// streamErr is why the stream could not be created or used, nil while
	// it works (see StreamErr).
	streamErr atomic.Pointer[error]
	progress  chan struct{} // cap 1: acknowledgements were recorded
	running   sync.Mutex    // held by Run
}

// pending is one event sent (or to be sent) and not yet acknowledged.
type pending struct {
	pos  uint64
	head chainHead
	own  bool // head belongs to this node's chain (not an older node id's)
	msg  *nats.Msg
	fut  jetstream.PubAckFuture
	sent time.Time
}

// NewPublisher checks cfg and returns a Publisher. Nothing runs until Run.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if cfg.Spool == nil || cfg.Conn == nil {
		return nil, errors.New("audit: publisher needs a spool and a NATS connection")
	}
	if cfg.SignKey != nil && len(cfg.SignKey) != ed25519.PrivateKeySize {
		return nil, errors.New("audit: publisher sign key is not an Ed25519 private key")
	}
	if cfg.Window < 0 || cfg.AckTimeout < 0 || cfg.MinBackoff < 0 || cfg.MaxBackoff < 0 || cfg.CheckpointInterval < 0 {
		return nil, errors.New("audit: negative publisher setting")
	}
	if cfg.Window == 0 {
		cfg.Window = 256
	}
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = 5 * time.Second
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = 30 * time.Second
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
	p.streamErr.Store(&errStreamNotChecked)
	if p.met, err = newPublisherMetrics(cfg.MeterProvider); err != nil {
		return nil, fmt.Errorf("audit: metrics: %w", err)
	}
	return p, nil
}

// errStreamNotChecked is StreamErr's answer before Run first reached the
// stream.
var errStreamNotChecked = errors.New("audit stream not checked yet")

// ensureTimeout bounds one attempt to create or check the stream.
const ensureTimeout = 10 * time.Second

// StreamErr returns nil once Run has created or checked the stream (SPEC
// §9) and no publish has found it missing since; otherwise why not: not
// checked yet, or the NATS error of the last attempt (a stream JetStream
// refuses to create, such as one whose size limit exceeds the servers'
// max_file_store). While it is not nil no event leaves the spool, which
// fills until the node denies every request audit_unavailable. It is what
// a node's readiness check of the audit stream calls. Safe for concurrent
// use.
func (p *Publisher) StreamErr() error {
	if err := p.streamErr.Load(); err != nil {
		return *err
	}
	return nil
}

// ensureStream creates or checks the stream once and records the outcome:
// an error is logged (the first, then every 12th: about once a minute at
// the back-off's ceiling) and counted.
func (p *Publisher) ensureStream(ctx context.Context, attempt int) error {
	ectx, cancel := context.WithTimeout(ctx, ensureTimeout)
	err := EnsureStream(ectx, p.js, p.cfg.Stream, p.log)
	cancel()
	if err == nil {
		p.streamOK()
		return nil
	}
	if ctx.Err() != nil {
		return err
	}
	p.streamErr.Store(&err)
	p.met.streamFailures.Add(1)
	if attempt == 1 || attempt%12 == 0 {
		p.log.Error("audit stream cannot be created or used; events stay in the spool, and once it is full every request is denied audit_unavailable",
			"stream", p.cfg.Stream.withDefaults().Name, "err", err, "attempt", attempt,
			"pending", p.spool.Pending(), "spool_bytes", p.spool.Bytes())
	}
	return err
}

// streamOK clears StreamErr: the stream was created or checked, or it
// acknowledged an event.
func (p *Publisher) streamOK() {
	if prev := p.streamErr.Swap(nil); prev != nil && !errors.Is(*prev, errStreamNotChecked) {
		p.log.Info("audit stream available again; publishing the spool", "stream", p.cfg.Stream.withDefaults().Name)
	}
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
	// The stream first, retried with back-off: a node may start before
	// NATS does (SPEC §8.2), and a stream the servers refuse must be said
	// loudly, not retried in silence.
	ebo := retry.Backoff{Min: 250 * time.Millisecond, Max: 5 * time.Second}
	for attempt := 1; p.ensureStream(ctx, attempt) != nil; attempt++ {
		if !retry.Sleep(ctx, ebo.Next()) {
			return nil
		}
	}
	r := newReader(p.spool, p.spool.ackedPos.Load()+1)
	defer r.close()

	var (
		w     window
		fails int // consecutive failures, for the log
		bo    = retry.Backoff{Min: p.cfg.MinBackoff, Max: p.cfg.MaxBackoff}
		ck    checkpointer // the acknowledged head and the last checkpoint
	)
	// A last checkpoint covers what was acknowledged since the previous
	// one, so a verifier can see the newest events deleted after a stop.
	defer ck.final(ctx, p)
	defer p.giveAcks(&w)
	for {
		if ctx.Err() != nil {
			return nil
		}
		ck.maybe(ctx, p)
		damaged, sendErr := p.fill(&w, r)
		if sendErr == nil && len(w.inflight) == 0 {
			p.giveAcks(&w)
			select {
			case <-ctx.Done():
				return nil
			case <-p.spool.appended:
			case <-time.After(ck.wait(p, time.Second)): // a lost wake-up costs at most a second
			}
			continue
		}
		if sendErr == nil {
			head := w.inflight[0]
			select {
			case ack := <-head.fut.Ok():
				w.ackHead()
				ck.acked(head)
				fails = 0
				bo.Reset()
				if p.streamErr.Load() != nil {
					// A failed publish re-ensures the stream, and that can
					// fail too (no quorum yet); an acknowledgement proves
					// the stream is back, and no other success may follow
					// to clear it (the fault suite saw readyz stuck on
					// audit_stream after a quorum loss ended).
					p.streamOK()
				}
				p.met.published(ctx, time.Since(head.sent), ack.Duplicate)
				if len(w.inflight) == 0 || head.pos%64 == 0 {
					p.giveAcks(&w)
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
		for _, pm := range w.goBack(func(pm *pending) bool { return p.settle(ctx, pm) }) {
			ck.acked(pm)
			p.met.published(ctx, time.Since(pm.sent), false)
		}
		p.giveAcks(&w)
		fails++
		p.failed(ctx, sendErr, damaged, fails)
		if !retry.Sleep(ctx, bo.Next()) {
			return nil
		}
	}
}

// fill sends events until the window is full, resends first, so the stream
// sees each node's events in node_seq order. It returns the error that
// stopped it early; damaged reports spool damage the reader cannot pass.
func (p *Publisher) fill(w *window, r *reader) (damaged bool, err error) {
	for len(w.inflight) < p.cfg.Window {
		if len(w.resend) == 0 {
			rec, ok, err := r.Next()
			if err != nil {
				// An operator must act. The spool keeps growing, then
				// fails closed.
				return true, fmt.Errorf("read spool: %w", err)
			}
			if !ok {
				return false, nil
			}
			pm := &pending{pos: rec.pos, msg: &nats.Msg{
				Subject: rec.subject,
				Data:    append([]byte(nil), rec.data...),
				// SPEC §9: a resend of the same event is never stored
				// twice within the duplicate window.
				Header: nats.Header{jetstream.MsgIDHeader: []string{rec.eventID}},
			}}
			pm.head = chainHead{seq: rec.nodeSeq, sum: sha256.Sum256(rec.data), at: rec.appendedAt}
			pm.own = rec.nodeID == p.spool.cfg.NodeID
			if p.cfg.SignKey != nil {
				// Signed once, when read: a resend carries the same bytes.
				pm.msg.Header.Set(SignatureHeader, signEvent(p.cfg.SignKey, pm.msg.Data))
			}
			w.resend = append(w.resend, pm)
		}
		pm := w.resend[0]
		fut, err := p.js.PublishMsgAsync(pm.msg)
		if err != nil {
			return false, err
		}
		pm.fut, pm.sent = fut, time.Now()
		w.resend = w.resend[1:]
		w.inflight = append(w.inflight, pm)
	}
	return false, nil
}

// giveAcks hands the acknowledged prefix to the spool, which may then drop
// it, and wakes Flush.
func (p *Publisher) giveAcks(w *window) {
	if w.acked == 0 {
		return
	}
	p.spool.ack(w.acked)
	w.acked = 0
	select {
	case p.progress <- struct{}{}:
	default:
	}
}

// failed counts and logs a failed round (rate-limited: the first, then
// every 50th) and re-ensures the stream when no stream took the subject.
func (p *Publisher) failed(ctx context.Context, err error, damaged bool, fails int) {
	p.met.failures.Add(1)
	switch {
	case damaged && (fails == 1 || fails%50 == 0):
		p.log.Error("audit spool unreadable; publishing stopped, the spool will fill and the node fail closed",
			"err", err, "pending", p.spool.Pending())
	case fails == 1 || fails%50 == 0:
		p.log.Warn("audit publish failed; events stay in the spool and are retried",
			"err", err, "pending", p.spool.Pending(), "spool_bytes", p.spool.Bytes())
	}
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		// Someone deleted the stream, or NATS is away: re-create it (a
		// refusal is logged and counted there).
		_ = p.ensureStream(ctx, fails)
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

// window is the publisher's resend window: the events sent and awaiting an
// acknowledgement, and those to send again before anything newer is read,
// both in spool order. Run's goroutine owns it.
type window struct {
	inflight []*pending // sent, in pos order
	resend   []*pending // to send again, in pos order, before reading more
	acked    uint64     // highest acknowledged pos not yet given to the spool
}

// ackHead records the acknowledgement of the oldest event in flight.
func (w *window) ackHead() {
	w.acked = w.inflight[0].pos
	w.inflight = w.inflight[1:]
}

// goBack handles a failure: it settles everything in flight (so an old
// attempt is not stored after its resend), keeps the acknowledged prefix,
// and queues everything from the first failure to be sent again, in order.
// It returns the events found acknowledged.
func (w *window) goBack(settle func(*pending) bool) (acked []*pending) {
	firstFailed := len(w.inflight)
	for i, pm := range w.inflight {
		if !settle(pm) && firstFailed == len(w.inflight) {
			firstFailed = i
		}
	}
	acked = w.inflight[:firstFailed:firstFailed]
	if firstFailed > 0 {
		w.acked = acked[firstFailed-1].pos
	}
	again := w.inflight[firstFailed:]
	for _, pm := range again {
		pm.fut = nil
	}
	w.resend = append(append([]*pending(nil), again...), w.resend...)
	w.inflight = nil
	return acked
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
