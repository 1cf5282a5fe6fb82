package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// readOpts selects what each reads.
type readOpts struct {
	since   time.Time // zero: from the start, unless onlyNew
	onlyNew bool      // only events stored from now on
	filters []string  // subject filters; none means all
	follow  bool      // keep reading after the last stored event
}

// each calls fn for every selected message of the stream, in stream order,
// through an ordered consumer (no server-side state left behind). Without
// follow it returns once the last message stored when it started was read.
func each(ctx context.Context, c *client, o readOpts, fn func(jetstream.Msg) error) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: o.filters, DeliverPolicy: jetstream.DeliverAllPolicy}
	switch {
	case o.onlyNew:
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	case !o.since.IsZero():
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &o.since
	}
	cons, err := c.js.OrderedConsumer(ctx, c.stream, cfg)
	if err != nil {
		return fmt.Errorf("stream %s: %w", c.stream, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", c.stream, err)
	}
	if !o.follow && info.NumPending == 0 {
		return nil
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	// Next blocks without a context: stopping the iterator ends it.
	stopOnDone := context.AfterFunc(ctx, it.Stop)
	defer stopOnDone()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return err
		}
		if err := fn(m); err != nil {
			return err
		}
		if !o.follow {
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			if md.NumPending == 0 {
				return nil
			}
		}
	}
}

// streamSeq is m's stream sequence, 0 if unknown.
func streamSeq(m jetstream.Msg) uint64 {
	if md, err := m.Metadata(); err == nil {
		return md.Sequence.Stream
	}
	return 0
}
