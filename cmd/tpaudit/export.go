package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/audit"
)

func exportFlags(fs *flag.FlagSet) func(context.Context, *client, io.Writer) (int, error) {
	durable := fs.String("durable", "tpaudit-export", "durable consumer name: a rerun with the same name continues after the last exported event")
	outPath := fs.String("out", "", "append to this file (fsynced before each acknowledgement); empty: standard output")
	since := fs.String("since", "", "where a new durable consumer starts: this far back (24h) or this RFC 3339 time; empty: the stream's start")
	follow := fs.Bool("follow", false, "keep exporting new events instead of stopping at the end of the stream")
	batch := fs.Int("batch", 256, "events fetched at once")
	format := fs.String("format", "jsonl", "jsonl: the events as stored; ocsf: each event as an OCSF API Activity (class_uid 6003) object, one a line (docs/AUDIT.md)")
	return func(ctx context.Context, c *client, stdout io.Writer) (int, error) {
		start, err := parseSince(*since, time.Now())
		if err != nil {
			return exitUsage, err
		}
		encode := func(data []byte) ([]byte, error) { return data, nil }
		switch *format {
		case "jsonl":
		case "ocsf":
			encode = toOCSF
		default:
			return exitUsage, fmt.Errorf("--format=%s: want jsonl or ocsf", *format)
		}
		cfg := jetstream.ConsumerConfig{
			Durable:       *durable,
			Description:   "tpaudit export",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       time.Minute,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			MaxAckPending: max(*batch, 1),
		}
		if !start.IsZero() {
			cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
		}
		// An existing durable keeps its position; its start options cannot
		// change, so it is looked up before it is created.
		cons, err := c.js.Consumer(ctx, c.stream, *durable)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			cons, err = c.js.CreateConsumer(ctx, c.stream, cfg)
		}
		if err != nil {
			return 1, fmt.Errorf("consumer %s on %s: %w", *durable, c.stream, err)
		}
		out, syncOut := stdout, func() error { return nil }
		if *outPath != "" {
			f, err := os.OpenFile(*outPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			if err != nil {
				return 1, err
			}
			defer f.Close()
			out, syncOut = f, f.Sync
		}
		w := bufio.NewWriter(out)
		var n int
		for ctx.Err() == nil {
			info, err := cons.Info(ctx)
			if err != nil {
				return 1, err
			}
			if info.NumPending == 0 && info.NumAckPending == 0 && !*follow {
				break
			}
			msgs, err := cons.Fetch(*batch, jetstream.FetchMaxWait(2*time.Second))
			if err != nil {
				return 1, err
			}
			var got []jetstream.Msg
			var lines [][]byte
			for m := range msgs.Messages() {
				got = append(got, m)
				if audit.IsCheckpointSubject(m.Subject()) {
					continue // checkpoints serve verify; the export holds events
				}
				line, err := encode(m.Data())
				if err != nil {
					// Nothing of this batch is written or acknowledged: a
					// rerun (or --format jsonl) starts at this batch again.
					return 1, fmt.Errorf("stream %s message on %s: %w", c.stream, m.Subject(), err)
				}
				lines = append(lines, line)
			}
			if err := msgs.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && ctx.Err() == nil {
				return 1, err
			}
			for _, line := range lines {
				if _, err := fmt.Fprintf(w, "%s\n", line); err != nil {
					return 1, err
				}
			}
			n += len(lines)
			// Written and synced before acknowledged: a crash here
			// exports an event twice at worst, never loses one.
			if err := w.Flush(); err != nil {
				return 1, err
			}
			if err := syncOut(); err != nil {
				return 1, err
			}
			for _, m := range got {
				if err := m.DoubleAck(ctx); err != nil {
					return 1, fmt.Errorf("acknowledge: %w", err)
				}
			}
		}
		fmt.Fprintf(c.stderr, "tpaudit export: %d events exported through consumer %s\n", n, *durable)
		return 0, nil
	}
}
