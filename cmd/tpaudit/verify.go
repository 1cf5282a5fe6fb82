package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/audit"
)

func verifyFlags(fs *flag.FlagSet) func(context.Context, *client, io.Writer) (int, error) {
	truncated := fs.Bool("allow-truncated-head", false, "accept chains that start after node_seq 1 even if the stream's first message is still its first (retention removed the rest by other means)")
	return func(ctx context.Context, c *client, out io.Writer) (int, error) {
		st, err := c.js.Stream(ctx, c.stream)
		if err != nil {
			return 1, fmt.Errorf("stream %s: %w", c.stream, err)
		}
		// Retention by age and size removes a stream's oldest messages:
		// then chains may start late, and that is not tampering.
		v := &audit.ChainVerifier{HeadTrimmed: *truncated || st.CachedInfo().State.FirstSeq > 1}
		var n int
		err = each(ctx, c, readOpts{}, func(m jetstream.Msg) error {
			n++
			v.Add(streamSeq(m), m.Subject(), m.Data())
			return nil
		})
		if err != nil {
			return 1, err
		}
		v.Finish()
		for _, nc := range v.Nodes() {
			fmt.Fprintf(out, "node %q: %d events, node_seq %d..%d", nc.NodeID, nc.Events, nc.First, nc.Last)
			if nc.Reordered > 0 {
				// A stream leader change in the middle of a window of
				// publishes; the chain is checked in node_seq order.
				fmt.Fprintf(out, " (%d stored out of node_seq order)", nc.Reordered)
			}
			fmt.Fprintln(out)
		}
		problems := v.Problems()
		for _, p := range problems {
			fmt.Fprintf(out, "PROBLEM %s\n", p)
		}
		if len(problems) > 0 {
			fmt.Fprintf(out, "%d messages, %d problems: the stream is not a whole record\n", n, len(problems))
			return exitProblems, nil
		}
		fmt.Fprintf(out, "%d messages, every chain whole (a deletion of a node's newest events cannot be seen here; compare node_seq with the node)\n", n)
		return 0, nil
	}
}
