package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/audit"
)

func tailFlags(fs *flag.FlagSet) func(context.Context, *client, io.Writer) (int, error) {
	outcome := fs.String("outcome", "", "only this outcome: allow, deny or bundle")
	reasonCode := fs.String("reason", "", "only this reason_code")
	route := fs.String("route", "", "only this route_id")
	subject := fs.String("subject", "", "only this passport subject (sub)")
	node := fs.String("node", "", "only this node_id")
	since := fs.String("since", "", "start this far back (10m) or at this RFC 3339 time; empty: new events only")
	follow := fs.Bool("follow", true, "keep printing new events; false stops at the end of the stream")
	text := fs.Bool("text", false, "one readable line per event instead of the event JSON")
	return func(ctx context.Context, c *client, out io.Writer) (int, error) {
		start, err := parseSince(*since, time.Now())
		if err != nil {
			return exitUsage, err
		}
		o := readOpts{since: start, onlyNew: *since == "", follow: *follow, filters: []string{subjectFilter(*outcome, *reasonCode)}}
		return 0, each(ctx, c, o, func(m jetstream.Msg) error {
			if audit.IsCheckpointSubject(m.Subject()) {
				return nil // a node's checkpoint, not an event (docs/AUDIT.md)
			}
			e, err := audit.Decode(m.Data())
			if err != nil {
				fmt.Fprintf(out, "# stream seq %d: not an audit event\n", streamSeq(m))
				return nil
			}
			if (*route != "" && e.RouteID != *route) || (*subject != "" && e.Subject != *subject) || (*node != "" && e.NodeID != *node) {
				return nil
			}
			if *text {
				_, err = fmt.Fprintf(out, "%s %s #%d %s %s route=%s sub=%s status=%d request_id=%s\n",
					e.OccurredAt, e.NodeID, e.NodeSeq, e.Outcome, e.ReasonCode, e.RouteID, e.Subject, e.Status, e.RequestID)
				return err
			}
			_, err = fmt.Fprintf(out, "%s\n", m.Data())
			return err
		})
	}
}

// subjectFilter narrows the subjects server-side:
// trustplane.audit.<outcome>.<reason_code>, * for an empty one.
func subjectFilter(outcome, reasonCode string) string {
	if outcome == "" {
		outcome = "*"
	}
	if reasonCode == "" {
		reasonCode = "*"
	}
	return audit.SubjectPrefix + outcome + "." + reasonCode
}
