package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/reason"
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
				_, err = fmt.Fprintln(out, textLine(e))
				return err
			}
			_, err = fmt.Fprintf(out, "%s\n", m.Data())
			return err
		})
	}
}

// tailCheck refuses filters that can match nothing: a misspelt outcome or
// reason code would otherwise print nothing and exit 0, which reads as "no
// such event".
func tailCheck(fs *flag.FlagSet) error {
	var errs []error
	outcome := fs.Lookup("outcome").Value.String()
	switch outcome {
	case "", audit.OutcomeAllow, audit.OutcomeDeny, audit.OutcomeBundle:
	default:
		errs = append(errs, fmt.Errorf("--outcome=%q (TPCLUSTER_OUTCOME): want allow, deny or bundle", outcome))
	}
	if code := fs.Lookup("reason").Value.String(); code != "" && !slices.ContainsFunc(reason.All(), func(c reason.Code) bool { return c.String() == code }) {
		errs = append(errs, fmt.Errorf("--reason=%q (TPCLUSTER_REASON): not a reason code (docs/SPEC.md §6, §8.2)", code))
	}
	if _, err := parseSince(fs.Lookup("since").Value.String(), time.Now()); err != nil {
		errs = append(errs, fmt.Errorf("%w (TPCLUSTER_SINCE)", err))
	}
	return errors.Join(errs...)
}

// textLine is one event as tail --text prints it: request events with their
// codes, detail and route, bundle events with the document concerned. Empty
// members are left out rather than printed as "route=".
func textLine(e *audit.Event) string {
	line := fmt.Sprintf("%s %s #%d %s %s", e.OccurredAt, e.NodeID, e.NodeSeq, e.Outcome, e.ReasonCode)
	add := func(k, v string) {
		if v != "" {
			line += " " + k + "=" + v
		}
	}
	if e.Outcome == audit.OutcomeBundle {
		add("kind", e.BundleKind)
		line += fmt.Sprintf(" seq=%d", e.BundleSequence)
		add("sha256", e.BundleSHA256)
		if e.PolicyID != "" {
			line += fmt.Sprintf(" policy_seq=%d", e.PolicyVersion)
		}
	} else {
		add("detail", e.DetailCode.String())
		line += fmt.Sprintf(" status=%d", e.Status)
		add("route", e.RouteID)
		add("sub", e.Subject)
		add("request_id", e.RequestID)
	}
	if e.DetailReason != "" {
		line += fmt.Sprintf(" why=%q", e.DetailReason)
	}
	return line
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
