package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/audit"
)

// exitNotFound is explain's status when no event has the request id.
const exitNotFound = 1

func explainFlags(fs *flag.FlagSet) func(context.Context, *client, io.Writer) (int, error) {
	since := fs.String("since", "", "read from this far back (24h) or this RFC 3339 time; empty: the whole stream")
	return func(ctx context.Context, c *client, out io.Writer) (int, error) {
		id := fs.Arg(0)
		start, err := parseSince(*since, time.Now())
		if err != nil {
			return exitUsage, err
		}
		// request_id is no subject token, so the stream is read, not
		// filtered: --since bounds how much.
		var found, read int
		err = each(ctx, c, readOpts{since: start}, func(m jetstream.Msg) error {
			read++
			e, err := audit.Decode(m.Data())
			if err != nil || e.RequestID != id {
				return nil
			}
			if found++; found > 1 {
				fmt.Fprintln(out)
			}
			_, err = io.WriteString(out, explain(e))
			return err
		})
		if err != nil {
			return 1, err
		}
		if found == 0 {
			return exitNotFound, fmt.Errorf("no event with request_id %q among %d events of stream %s", id, read, c.stream)
		}
		return 0, nil
	}
}

// explainCheck: the request id is what X-Request-Id carried; an empty one
// matches bundle events, which have none.
func explainCheck(fs *flag.FlagSet) error {
	var errs []error
	if strings.TrimSpace(fs.Arg(0)) == "" {
		errs = append(errs, errors.New("REQUEST_ID is empty: give the X-Request-Id of the answer"))
	}
	if _, err := parseSince(fs.Lookup("since").Value.String(), time.Now()); err != nil {
		errs = append(errs, fmt.Errorf("%w (TPCLUSTER_SINCE)", err))
	}
	return errors.Join(errs...)
}

// explain says in words what the event of one decision records.
func explain(e *audit.Event) string {
	var b strings.Builder
	verdict := "denied"
	if e.Accepted {
		verdict = "accepted"
	}
	fmt.Fprintf(&b, "request %s was %s: %d %s\n", e.RequestID, verdict, e.Status, e.ReasonCode)
	line := func(k, format string, a ...any) {
		fmt.Fprintf(&b, "  %-11s "+format+"\n", append([]any{k + ":"}, a...)...)
	}
	if !e.Accepted {
		if e.DetailCode != "" {
			line("why", "%s (detail_code %s)", e.DetailCode.Explain(), e.DetailCode)
		}
		if e.DetailReason != "" {
			line("error", "%s", e.DetailReason)
		}
	}
	line("when", "%s on node %s (node_seq %d, event %s)", e.OccurredAt, orNone(e.NodeID), e.NodeSeq, e.EventID)
	line("request", "%s %s, route %s", orNone(e.Method), orNone(e.Path), orNone(e.RouteID))
	if e.PolicyID != "" {
		line("policy", "sequence %d (policy_id %s)", e.PolicyVersion, e.PolicyID)
	} else {
		line("policy", "none loaded, or denied before the policy was read")
	}
	if e.Issuer != "" {
		line("caller", "issuer %s, subject %s, audience %s, jti %s", e.Issuer, orNone(e.Subject), orNone(e.Audience), orNone(e.JTI))
	} else {
		line("caller", "unknown: denied before the passport was read")
	}
	if e.KeyBinding != "" || e.RequiredKeyBinding != "" {
		line("signer", "key binding %s, route requires %s", orNone(e.KeyBinding), orNone(e.RequiredKeyBinding))
	}
	if e.TranscriptSHA256 != "" {
		line("transcript", "sha256 %s (matched)", e.TranscriptSHA256)
	}
	if e.AssertionJTI != "" {
		line("assertion", "backend assertion jti %s, signed with key %s", e.AssertionJTI, orNone(e.AssertionKID))
	}
	if e.EgressProvider != "" {
		line("egress", "provider %s, grant %s", e.EgressProvider, orNone(e.EgressGrant))
		if e.EgressTokenSHA256 != "" {
			source := "from the provider"
			if e.EgressFromCache != nil && *e.EgressFromCache {
				source = "from the cache"
			}
			line("token", "scope %q, audience %s, lifetime %d s, %s (sha256 %s)",
				e.EgressScopes, orNone(e.EgressAudience), e.EgressTokenLifetimeS, source, e.EgressTokenSHA256)
		}
	}
	if e.TraceID != "" {
		line("trace", "%s", e.TraceID)
	}
	line("latency", "%d µs", e.LatencyUS)
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
