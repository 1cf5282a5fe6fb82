package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/audit"
)

// statsReport is stats' JSON output.
type statsReport struct {
	Since    string         `json:"since"`
	Events   int            `json:"events"`
	Outcome  map[string]int `json:"by_outcome"`
	Reason   map[string]int `json:"by_reason_code"`
	Route    map[string]int `json:"by_route_id"`
	NodeSeen map[string]int `json:"by_node_id"`
}

func statsFlags(fs *flag.FlagSet) func(context.Context, *client, io.Writer) (int, error) {
	window := fs.Duration("window", time.Hour, "count the events of this last period")
	asJSON := fs.Bool("json", false, "print JSON")
	return func(ctx context.Context, c *client, out io.Writer) (int, error) {
		if *window <= 0 {
			return exitUsage, fmt.Errorf("--window %s: must be positive", *window)
		}
		since := time.Now().Add(-*window)
		r := statsReport{Since: audit.Timestamp(since), Outcome: map[string]int{}, Reason: map[string]int{}, Route: map[string]int{}, NodeSeen: map[string]int{}}
		err := each(ctx, c, readOpts{since: since}, func(m jetstream.Msg) error {
			if audit.IsCheckpointSubject(m.Subject()) {
				return nil
			}
			e, err := audit.Decode(m.Data())
			if err != nil {
				return nil
			}
			r.Events++
			r.Outcome[e.Outcome]++
			r.Reason[string(e.ReasonCode)]++
			if e.Outcome != audit.OutcomeBundle {
				r.Route[e.RouteID]++
			}
			r.NodeSeen[e.NodeID]++
			return nil
		})
		if err != nil {
			return 1, err
		}
		if *asJSON {
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			return 0, enc.Encode(r)
		}
		fmt.Fprintf(out, "%d events since %s\n", r.Events, r.Since)
		table(out, "outcome", r.Outcome)
		table(out, "reason_code", r.Reason)
		table(out, "route_id", r.Route)
		table(out, "node_id", r.NodeSeen)
		return 0, nil
	}
}

// table prints counts, largest first.
func table(out io.Writer, title string, m map[string]int) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b)) })
	fmt.Fprintf(out, "\n%-40s %8s\n", title, "count")
	for _, k := range keys {
		name := k
		if name == "" {
			name = "(none)"
		}
		fmt.Fprintf(out, "%-40s %8d\n", name, m[k])
	}
}
