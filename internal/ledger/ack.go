package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// metricIntegrity counts what should never happen on a healthy ledger: an
// acknowledgement that did not come from the ledger's stream, or the stream
// gone or replaced (issue 12).
const metricIntegrity = "tpcluster.ledger.integrity_errors"

// Integrity problems, the kind attribute of metricIntegrity.
const (
	kindWrongStream  = "wrong_stream"
	kindBackwards    = "sequence_backwards"
	kindDuplicate    = "duplicate_ack"
	kindMissing      = "stream_missing"
	kindRecreated    = "stream_recreated"
	integrityLogOnce = time.Minute
)

// errBadAck is the cause of a consume whose PubAck cannot be the stream's.
var errBadAck = errors.New("acknowledgement not from the ledger stream")

// ackCheck checks each PubAck of a create against the ledger's stream. A
// reply on the key's subject may come from anything allowed to subscribe
// there (before issue 12, any client: with the stream deleted, a fake
// responder made replays pass). A real ack names the stream, is no
// duplicate (the ledger sends no message ids), and has a sequence above
// every sequence acknowledged before the publish was sent: the stream
// stores a message after every message already acknowledged. Concurrent
// consumes may be acknowledged out of order, so the bound is the highest
// sequence seen when the publish left, not when the ack came back.
type ackCheck struct {
	stream  string
	highest atomic.Uint64 // the highest sequence acknowledged so far
}

// floor is the bound for a publish about to be sent.
func (a *ackCheck) floor() uint64 { return a.highest.Load() }

// check returns the integrity kind of a bad ack, or "".
func (a *ackCheck) check(ack *jetstream.PubAck, floor uint64) string {
	switch {
	case ack == nil || ack.Stream != a.stream:
		return kindWrongStream
	case ack.Duplicate:
		return kindDuplicate
	case ack.Sequence <= floor:
		return kindBackwards
	}
	for {
		h := a.highest.Load()
		if ack.Sequence <= h || a.highest.CompareAndSwap(h, ack.Sequence) {
			return ""
		}
	}
}

// integrity records an integrity problem: an Error log (rate-limited, an
// operator must act) and the counter.
type integrity struct {
	counter metric.Int64Counter
	last    atomic.Int64 // unix nanoseconds of the last log line
}

func newIntegrity(meter metric.Meter) (*integrity, error) {
	c, err := meter.Int64Counter(metricIntegrity,
		metric.WithUnit("{event}"),
		metric.WithDescription("Replay ledger integrity errors by kind: acknowledgements not from the ledger stream, the stream missing or recreated."))
	if err != nil {
		return nil, err
	}
	return &integrity{counter: c}, nil
}

func (l *Ledger) recordIntegrity(ctx context.Context, kind string, err error) {
	if l.metrics != nil && l.metrics.integrity != nil {
		l.metrics.integrity.counter.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", kind)))
		now := time.Now().UnixNano()
		last := l.metrics.integrity.last.Load()
		if now-last < int64(integrityLogOnce) || !l.metrics.integrity.last.CompareAndSwap(last, now) {
			return
		}
	}
	l.log.Error("replay ledger integrity error: requests are denied replay_ledger_unavailable", "bucket", l.bucket, "kind", kind, "err", err)
}

// verifyAck turns a bad ack into an unavailable-ledger error.
func (l *Ledger) verifyAck(ctx context.Context, ack *jetstream.PubAck, floor uint64) error {
	kind := l.acks.check(ack, floor)
	if kind == "" {
		return nil
	}
	var err error
	switch kind {
	case kindWrongStream:
		name := "<none>"
		if ack != nil {
			name = ack.Stream
		}
		err = fmt.Errorf("%w: stream %q, want %q", errBadAck, name, l.acks.stream)
	case kindDuplicate:
		err = fmt.Errorf("%w: marked duplicate, but no message id was sent", errBadAck)
	default:
		err = fmt.Errorf("%w: sequence %d not above %d, already acknowledged (the stream was replaced?)", errBadAck, ack.Sequence, floor)
	}
	l.recordIntegrity(ctx, kind, err)
	return err
}
