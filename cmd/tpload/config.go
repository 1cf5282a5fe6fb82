package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/tpcluster/tpcluster/internal/cliflag"
	"github.com/tpcluster/tpcluster/internal/loadgen"
)

// config is a load run as the flags give it.
type config struct {
	mode       string // closed, open or ceiling
	targets    cliflag.List
	fanOut     bool
	expect     string
	world      string
	prepare    string
	rate       float64
	workers    int
	requests   int
	duration   time.Duration
	timeout    time.Duration
	distinct   int
	ttl        time.Duration
	getShare   float64
	bodySizes  cliflag.List
	replay     float64
	tamper     float64
	badPass    float64
	seed       uint64
	pids       map[string]*cliflag.List // role → pid list
	monitor    cliflag.List
	jsonOut    string
	progress   bool
	noProgress bool
}

// pidRoles are the --pid-<role> flags, in report order.
var pidRoles = []string{"verifier", "nats", "proxy", "nginx", "upstream"}

func newFlagSet(c *config) *flag.FlagSet {
	fs := flag.NewFlagSet("tpload", flag.ContinueOnError)
	fs.StringVar(&c.mode, "mode", "closed", "closed (workers as fast as answered), open (fixed arrival rate) or ceiling (two ed25519.Verify per request, no network)")
	fs.Var(&c.targets, "target", "base URL of a target, http://127.0.0.1:PORT (repeatable, comma list); loopback only")
	fs.BoolVar(&c.fanOut, "fan-out", false, "send each request to every target in turn (else round robin)")
	fs.StringVar(&c.expect, "expect", "verifier", "verifier (answers must match each request's kind) or upstream (every answer 2xx)")
	fs.StringVar(&c.world, "world", "", "world directory: world.json from --prepare, or verifierd --demo's files")
	fs.StringVar(&c.prepare, "prepare", "", "write a new world (keys, signed bundles, world.json) into this directory and use it; with no target and not ceiling mode, exit after writing")
	fs.Float64Var(&c.rate, "rate", 0, "open mode: arrivals per second")
	fs.IntVar(&c.workers, "workers", 64, "concurrent senders (bound on requests in flight); ceiling: verifying goroutines, 0 for all cores")
	fs.IntVar(&c.requests, "requests", 10000, "number of sends (bound by count)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "bound by time: nothing is sent after it")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "bound on one request")
	fs.IntVar(&c.distinct, "distinct", 0, "expect upstream only: sign at most this many requests and reuse them in turn (0: one per send)")
	fs.DurationVar(&c.ttl, "passport-ttl", 10*time.Minute, "passport lifetime")
	fs.Float64Var(&c.getShare, "get-share", 0.5, "share of signed requests that are GETs; the rest are POSTs")
	fs.Var(&c.bodySizes, "body-sizes", "POST body sizes in bytes, picked uniformly (comma list; default 1024)")
	fs.Float64Var(&c.replay, "replay-share", 0, "share of sends that re-send an earlier signed request (expect jti_replay)")
	fs.Float64Var(&c.tamper, "tamper-share", 0, "share of sends whose query was changed after signing (expect request_binding_mismatch)")
	fs.Float64Var(&c.badPass, "bad-passport-share", 0, "share of sends with a broken passport signature or a malformed passport")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the mix (kinds, methods, sizes)")
	c.pids = map[string]*cliflag.List{}
	for _, role := range pidRoles {
		l := new(cliflag.List)
		c.pids[role] = l
		fs.Var(l, "pid-"+role, "PIDs of the "+role+" processes whose CPU time is reported per 1,000 decisions (comma list)")
	}
	fs.Var(&c.monitor, "nats-monitor", "monitoring base URLs of nats-servers, http://127.0.0.1:PORT (comma list): their messages, JetStream API requests and streams per decision")
	fs.StringVar(&c.jsonOut, "json", "", "also write the report as JSON to this file")
	fs.BoolVar(&c.progress, "progress", false, "show the progress line even when stderr is not a terminal")
	fs.BoolVar(&c.noProgress, "no-progress", false, "never show the progress line")
	return fs
}

// validate reports every problem with c.
func (c *config) validate() error {
	var errs []error
	bad := func(name string, v any, msg string) { errs = append(errs, cliflag.Problem(name, v, msg)) }
	switch c.mode {
	case "closed", "open", "ceiling":
	default:
		bad("mode", c.mode, "want closed, open or ceiling")
	}
	if c.expect != "verifier" && c.expect != "upstream" {
		bad("expect", c.expect, "want verifier or upstream")
	}
	if (c.world == "") == (c.prepare == "") {
		errs = append(errs, errors.New("--world or --prepare: give exactly one"))
	}
	if c.world != "" {
		// Before any signing starts: a mistyped directory is a
		// configuration problem (exit 2), not a failed run.
		if fi, err := os.Stat(c.world); err != nil {
			bad("world", c.world, err.Error())
		} else if !fi.IsDir() {
			bad("world", c.world, "not a directory")
		}
	}
	if c.mode == "open" && c.rate <= 0 {
		bad("rate", c.rate, "must be positive in open mode")
	}
	if c.mode != "open" && c.rate != 0 {
		bad("rate", c.rate, "only for --mode=open")
	}
	if c.mode != "ceiling" {
		if len(c.targets) == 0 && c.prepare == "" {
			errs = append(errs, errors.New("--target: at least one is needed"))
		}
		for _, t := range c.targets {
			if _, err := loadgen.CheckTarget(t); err != nil {
				bad("target", t, err.Error())
			}
		}
		if c.workers < 1 {
			bad("workers", c.workers, "must be positive")
		}
	} else if c.workers < 0 {
		bad("workers", c.workers, "must be 0 (all cores) or positive")
	}
	if c.requests < 1 {
		bad("requests", c.requests, "must be positive: every run is bounded by count")
	}
	if c.duration <= 0 {
		bad("duration", c.duration, "must be positive: every run is bounded by time")
	}
	if c.timeout <= 0 {
		bad("timeout", c.timeout, "must be positive")
	}
	if c.distinct < 0 || (c.distinct > 0 && c.expect != "upstream") {
		bad("distinct", c.distinct, "reusing signed requests is for --expect=upstream only (a verifier would deny them as replays)")
	}
	if c.fanOut && c.expect == "upstream" {
		bad("fan-out", true, "only for --expect=verifier")
	}
	if _, err := c.sizes(); err != nil {
		bad("body-sizes", c.bodySizes.String(), err.Error())
	}
	if _, err := c.cpuGroups(); err != nil {
		errs = append(errs, err)
	}
	for _, m := range c.monitor {
		if _, err := loadgen.CheckTarget(m); err != nil {
			bad("nats-monitor", m, err.Error())
		}
	}
	if err := c.mix().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *config) sizes() ([]int, error) {
	var out []int
	for _, s := range c.bodySizes {
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a whole number of bytes", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func (c *config) mix() *loadgen.Mix {
	sizes, _ := c.sizes()
	return &loadgen.Mix{
		GetShare: c.getShare, BodySizes: sizes, ReplayShare: c.replay, TamperShare: c.tamper,
		BadPassportShare: c.badPass, Seed: c.seed,
	}
}

func (c *config) cpuGroups() ([]loadgen.CPUGroup, error) {
	var out []loadgen.CPUGroup
	var errs []error
	for _, role := range pidRoles {
		l := *c.pids[role]
		if len(l) == 0 {
			continue
		}
		g := loadgen.CPUGroup{Role: role}
		for _, s := range l {
			pid, err := strconv.Atoi(s)
			if err != nil || pid < 1 {
				errs = append(errs, fmt.Errorf("--pid-%s=%s: %q is not a process id", role, l.String(), s))
				continue
			}
			g.PIDs = append(g.PIDs, pid)
		}
		out = append(out, g)
	}
	return out, errors.Join(errs...)
}

// ceilingWorkers is --workers for the ceiling: 0 means every core.
func (c *config) ceilingWorkers() int {
	if c.workers == 0 {
		return runtime.GOMAXPROCS(0)
	}
	return c.workers
}

func (c *config) expectKind() loadgen.Expect {
	if strings.EqualFold(c.expect, "upstream") {
		return loadgen.ExpectUpstream
	}
	return loadgen.ExpectVerifier
}
