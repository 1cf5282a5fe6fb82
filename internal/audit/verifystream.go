package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// VerifyConfig configures VerifyStream. Zero values are documented per
// field.
type VerifyConfig struct {
	// Stream to verify. If empty, DefaultStream.
	Stream string
	// Members is the fleet (trust material audit_nodes). Required for a
	// pass: without it every event is from an unknown node.
	Members []Member
	// RetentionSlack, see CheckStream. If zero, DefaultRetentionSlack.
	RetentionSlack time.Duration
	// CheckpointMaxAge, see ChainVerifier. If zero, not checked.
	CheckpointMaxAge time.Duration
	// AllowTruncatedHead accepts chains that start after node_seq 1 even
	// when the stream's state does not show retention (an operator who
	// removed old messages on purpose says so).
	AllowTruncatedHead bool
	// ReorderWindow and UnsignedBefore, see ChainVerifier.
	ReorderWindow  int
	UnsignedBefore uint64
	// Now is the time the stream's age limit is measured from. If nil,
	// time.Now.
	Now func() time.Time
}

// Report is what VerifyStream found.
type Report struct {
	Messages  int
	Retention RetentionVerdict
	Nodes     []NodeChain
	Problems  []Problem // the stream's, then the chains', in the order found
}

// VerifyStream reads the whole audit stream through an ordered consumer
// (no server-side state left behind), checks its state against its limits
// (CheckStream) and every node's chain, signatures and checkpoints
// (ChainVerifier). An error means the stream could not be read; what was
// wrong with its contents is in Report.Problems.
func VerifyStream(ctx context.Context, js jetstream.JetStream, cfg VerifyConfig) (*Report, error) {
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	st, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		return nil, fmt.Errorf("audit: stream %s: %w", cfg.Stream, err)
	}
	info, err := st.Info(ctx, jetstream.WithDeletedDetails(true))
	if err != nil {
		return nil, fmt.Errorf("audit: stream %s: %w", cfg.Stream, err)
	}
	now := cfg.Now()
	r := &Report{Retention: CheckStream(StreamState{
		MaxAge: info.Config.MaxAge, MaxBytes: info.Config.MaxBytes,
		FirstSeq: info.State.FirstSeq, LastSeq: info.State.LastSeq,
		FirstTime: info.State.FirstTime, LastTime: info.State.LastTime,
		Msgs: info.State.Msgs, Bytes: info.State.Bytes, NumDeleted: info.State.NumDeleted, Deleted: info.State.Deleted,
	}, now, cfg.RetentionSlack)}
	v := &ChainVerifier{
		Members:          cfg.Members,
		HeadTrimmed:      r.Retention.HeadTrimmed || cfg.AllowTruncatedHead,
		RetainedFrom:     r.Retention.RetainedFrom,
		CheckpointMaxAge: cfg.CheckpointMaxAge,
		Now:              now,
		ReorderWindow:    cfg.ReorderWindow,
		UnsignedBefore:   cfg.UnsignedBefore,
	}
	if cfg.AllowTruncatedHead && r.Retention.RetainedFrom.IsZero() {
		v.RetainedFrom = info.State.FirstTime
	}
	if err := readAll(ctx, js, cfg.Stream, func(m jetstream.Msg) {
		r.Messages++
		md, err := m.Metadata()
		var seq uint64
		var at time.Time
		if err == nil {
			seq, at = md.Sequence.Stream, md.Timestamp
		}
		v.Add(Msg{StreamSeq: seq, Subject: m.Subject(), Signature: m.Headers().Get(SignatureHeader), Data: m.Data(), Time: at})
	}); err != nil {
		return nil, err
	}
	v.Finish()
	r.Nodes = v.Nodes()
	r.Problems = append(append(r.Problems, r.Retention.Problems...), v.Problems()...)
	return r, nil
}

// readAll calls fn for every message stored in the stream when it starts,
// in stream order.
func readAll(ctx context.Context, js jetstream.JetStream, stream string, fn func(jetstream.Msg)) error {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return fmt.Errorf("audit: stream %s: %w", stream, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("audit: stream %s: %w", stream, err)
	}
	if info.NumPending == 0 {
		return nil
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("audit: stream %s: %w", stream, err)
	}
	defer it.Stop()
	// Next blocks without a context: stopping the iterator ends it.
	stopOnDone := context.AfterFunc(ctx, it.Stop)
	defer stopOnDone()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("audit: read stream %s: %w", stream, ctx.Err())
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return fmt.Errorf("audit: read stream %s: %w", stream, err)
		}
		fn(m)
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("audit: read stream %s: %w", stream, err)
		}
		if md.NumPending == 0 {
			return nil
		}
	}
}
