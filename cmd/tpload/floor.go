package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/cliflag"
	"github.com/tpcluster/tpcluster/internal/loadgen"
	"github.com/tpcluster/tpcluster/internal/natsfloor"
	"github.com/tpcluster/tpcluster/internal/natsx"
)

// floorConfig is a tpload nats-floor run as the flags give it.
type floorConfig struct {
	natsURL      string
	auth         natsx.ClientAuth
	nodes        int
	like         string
	mode         string
	rate         float64
	workers      int
	pairs        int
	duration     time.Duration
	timeout      time.Duration
	window       int
	linger       time.Duration
	ledgerStream string
	auditStream  string
	pidNATS      cliflag.List
	monitor      cliflag.List
	jsonOut      string
	keep         bool
}

func newFloorFlagSet(c *floorConfig) *flag.FlagSet {
	fs := flag.NewFlagSet("tpload nats-floor", flag.ContinueOnError)
	fs.StringVar(&c.natsURL, "nats-url", "", "NATS server URLs, comma-separated (the cluster the verifiers ran on)")
	c.auth.RegisterFlags(fs)
	fs.IntVar(&c.nodes, "nodes", 3, "connections the pairs go out on, one per verifier node the run stands in for")
	fs.StringVar(&c.like, "like-connections", "", "connect like the clients whose connection name starts with this (\"verifierd\"): one connection per such client, to the server it is on, found through --nats-monitor (replaces --nodes)")
	fs.StringVar(&c.mode, "mode", "closed", "closed (workers as fast as acknowledged) or open (fixed pair rate)")
	fs.Float64Var(&c.rate, "rate", 0, "open mode: pairs per second")
	fs.IntVar(&c.workers, "workers", 64, "concurrent senders (bound on creates in flight)")
	fs.IntVar(&c.pairs, "requests", 1000000, "number of pairs (bound by count)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "bound by time: no pair is started after it")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "bound on one create")
	fs.IntVar(&c.window, "audit-window", 256, "audit publishes awaiting acknowledgement per connection (verifierd --audit-publish-window)")
	fs.DurationVar(&c.linger, "audit-linger", 0, "gather each connection's audit events and send them every this long in one burst (0: each at once); a lever to measure")
	fs.StringVar(&c.ledgerStream, "ledger-stream", natsfloor.LedgerStream, "the replay ledger's stream to copy")
	fs.StringVar(&c.auditStream, "audit-stream", natsfloor.AuditStream, "the audit stream to copy")
	fs.Var(&c.pidNATS, "pid-nats", "PIDs of the nats-server processes whose CPU time is reported per 1,000 pairs (comma list)")
	fs.Var(&c.monitor, "nats-monitor", "monitoring base URLs of the nats-servers, http://127.0.0.1:PORT (comma list): their counters per pair")
	fs.StringVar(&c.jsonOut, "json", "", "also write the report as JSON to this file")
	fs.BoolVar(&c.keep, "keep", false, "keep the floor's streams after the run")
	return fs
}

func (c *floorConfig) validate() error {
	var errs []error
	bad := func(name string, v any, msg string) { errs = append(errs, cliflag.Problem(name, v, msg)) }
	if c.natsURL == "" {
		bad("nats-url", c.natsURL, "required")
	}
	errs = append(errs, c.auth.Validate(time.Now())...)
	if c.nodes < 1 {
		bad("nodes", c.nodes, "must be positive")
	}
	switch c.mode {
	case "closed":
		if c.rate != 0 {
			bad("rate", c.rate, "only for --mode=open")
		}
	case "open":
		if c.rate <= 0 {
			bad("rate", c.rate, "must be positive in open mode")
		}
	default:
		bad("mode", c.mode, "want closed or open")
	}
	if c.workers < 1 {
		bad("workers", c.workers, "must be positive")
	}
	if c.pairs < 1 {
		bad("requests", c.pairs, "must be positive: every run is bounded by count")
	}
	if c.duration <= 0 {
		bad("duration", c.duration, "must be positive: every run is bounded by time")
	}
	if c.timeout <= 0 {
		bad("timeout", c.timeout, "must be positive")
	}
	if c.like != "" && len(c.monitor) == 0 {
		bad("like-connections", c.like, "needs --nats-monitor to find the connections")
	}
	if c.linger < 0 {
		bad("audit-linger", c.linger, "must not be negative")
	}
	if c.window < 1 {
		bad("audit-window", c.window, "must be positive")
	}
	if _, err := pidList("nats", c.pidNATS); err != nil {
		errs = append(errs, err)
	}
	for _, m := range c.monitor {
		if _, err := loadgen.CheckTarget(m); err != nil {
			bad("nats-monitor", m, err.Error())
		}
	}
	return errors.Join(errs...)
}

// pidList parses a --pid-<role> list.
func pidList(role string, l cliflag.List) ([]int, error) {
	var out []int
	var errs []error
	for _, s := range l {
		pid, err := strconv.Atoi(s)
		if err != nil || pid < 1 {
			errs = append(errs, fmt.Errorf("--pid-%s=%s: %q is not a process id", role, l.String(), s))
			continue
		}
		out = append(out, pid)
	}
	return out, errors.Join(errs...)
}

// runFloor is tpload nats-floor: the JetStream work of one decision, raw
// (internal/natsfloor).
func runFloor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c floorConfig
	err := parseFlags("tpload nats-floor", newFloorFlagSet(&c), args, c.validate, stderr)
	if err != nil {
		return err
	}
	var auth *natsx.ClientAuth
	if c.auth.Enabled() {
		auth = &c.auth
	}
	urls := make([]string, c.nodes)
	for i := range urls {
		urls[i] = c.natsURL
	}
	if c.like != "" {
		if urls, err = loadgen.ConnectionServers(ctx, c.monitor, c.like); err != nil {
			return err
		}
	}
	conns := make([]*nats.Conn, len(urls))
	defer func() {
		for _, nc := range conns {
			if nc != nil {
				nc.Close()
			}
		}
	}()
	for i := range conns {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conns[i], err = natsx.ConnectAuth(cctx, urls[i], "tpload-floor-"+strconv.Itoa(i+1), auth, nil)
		cancel()
		if err != nil {
			return err
		}
	}
	admin, err := jetstream.New(conns[0])
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	pids, _ := pidList("nats", c.pidNATS) // validated
	var groups []loadgen.CPUGroup
	if len(pids) > 0 {
		groups = append(groups, loadgen.CPUGroup{Role: "nats", PIDs: pids})
	}
	rate := 0.0
	if c.mode == "open" {
		rate = c.rate
	}
	rep, err := natsfloor.Run(ctx, natsfloor.Config{
		Conns: conns, Admin: admin, LedgerStream: c.ledgerStream, AuditStream: c.auditStream,
		Rate: rate, Workers: c.workers, Pairs: c.pairs, Duration: c.duration, Timeout: c.timeout,
		AuditWindow: c.window, AuditLinger: c.linger, Keep: c.keep, CPU: groups, NATSMonitor: c.monitor,
	})
	if rep != nil {
		if werr := rep.WriteText(stdout); werr != nil && err == nil {
			err = werr
		}
		if c.jsonOut != "" {
			if werr := writeJSON(c.jsonOut, rep); werr != nil && err == nil {
				err = werr
			}
		}
		if e := rep.Errors; e.Total() > 0 && err == nil {
			err = fmt.Errorf("%d pairs failed: %s", e.Total(), strings.Join(e.Samples, "; "))
		}
	}
	return err
}
