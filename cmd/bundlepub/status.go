package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundlekv"
	"github.com/tpcluster/tpcluster/internal/natsx"
)

type statusConfig struct {
	NATSURL  string
	NATSAuth natsx.ClientAuth // the bundlepub role's credentials
	Timeout  time.Duration
	JSON     bool
}

func parseStatus(args []string, stderr io.Writer) (*statusConfig, error) {
	c := new(statusConfig)
	fs := newFlagSet("status", "--nats-url URL [--timeout 2s] [--json]",
		"Asks every live verifierd on "+bundlekv.StatusSubject+" and prints, per node, the policy\n"+
			"bundle and trust material it decides with (sequence, sha256), the age of its view and\n"+
			"its stale freshness classes, then whether the fleet has converged. Replies are\n"+
			"gathered for --timeout; a node that does not answer in time is not listed.\n", stderr)
	fs.StringVar(&c.NATSURL, "nats-url", "", "NATS server URLs, comma-separated (required)")
	c.NATSAuth.RegisterFlags(fs)
	fs.DurationVar(&c.Timeout, "timeout", 2*time.Second, "how long replies are gathered")
	fs.BoolVar(&c.JSON, "json", false, "print the replies as a JSON array instead of a table")
	if err := parseFlags(fs, args, false); err != nil {
		return nil, err
	}
	return c, c.Validate()
}

// Validate reports every problem.
func (c *statusConfig) Validate() error {
	var p problems
	p.required("nats-url", c.NATSURL)
	p = append(p, c.NATSAuth.Validate(time.Now())...)
	if c.Timeout <= 0 {
		p.add("timeout", c.Timeout, "must be positive")
	}
	return p.err()
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseStatus(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	nc, err := connect(ctx, c.NATSURL, "bundlepub status", &c.NATSAuth, c.Timeout, log)
	if err != nil {
		return err
	}
	defer closeConn(ctx, nc, log)
	gctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	replies, malformed, err := bundlekv.GatherStatus(gctx, nc)
	if err != nil {
		return err
	}
	if c.JSON {
		if replies == nil {
			replies = []bundlekv.Status{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(replies)
	}
	printStatus(stdout, replies, malformed, c.Timeout)
	return nil
}

// printStatus prints one row per node and a convergence line.
func printStatus(w io.Writer, replies []bundlekv.Status, malformed int, timeout time.Duration) {
	if len(replies) == 0 {
		fmt.Fprintf(w, "no node answered within %s\n", timeout)
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tPOLICY SEQ\tPOLICY SHA256\tTRUST SEQ\tTRUST SHA256\tVIEW AGE\tSTALE")
		for _, r := range replies {
			if !r.Loaded {
				fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\tno pair loaded\n", r.NodeID)
				continue
			}
			stale := strings.Join(r.StaleClasses, ",")
			if stale == "" {
				stale = "-"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%.1fs\t%s\n", r.NodeID, r.PolicySequence, short(r.PolicySHA256),
				r.TrustSequence, short(r.TrustSHA256), r.ViewAgeSeconds, stale)
		}
		tw.Flush()
	}
	if malformed > 0 {
		fmt.Fprintf(w, "%d replies could not be read\n", malformed)
	}
	if len(replies) == 0 {
		return
	}
	first := replies[0]
	for _, r := range replies {
		if !r.Loaded || r.PolicySHA256 != first.PolicySHA256 || r.TrustSHA256 != first.TrustSHA256 {
			fmt.Fprintf(w, "NOT converged: %d nodes hold different pairs\n", len(replies))
			return
		}
	}
	fmt.Fprintf(w, "converged: %d nodes on policy bundle %d (sha256 %s) and trust material %d (sha256 %s)\n",
		len(replies), first.PolicySequence, first.PolicySHA256, first.TrustSequence, first.TrustSHA256)
}

// short abbreviates a digest for the table; the convergence line has it whole.
func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
