// Command tpload is tpcluster's load generator. It signs a pool
// of requests before the clock starts and sends them to loopback targets,
// in closed loop (--workers as fast as answered, to find the maximum) or
// open loop (--rate arrivals per second, latency from each due time), and
// reports throughput, latency percentiles, outcomes by reason code, errors
// and CPU per 1,000 decisions of the processes given by --pid-<role>.
//
//	tpload --prepare DIR                      write a world verifierd can load
//	tpload --world DIR --target URL [flags]   a load run
//	tpload --world DIR --mode ceiling         two ed25519.Verify per request on all cores
//	tpload upstream --listen ADDR             the demo upstream, in its own process
//	tpload proxy --listen ADDR --upstream URL a plain httputil.ReverseProxy
//	tpload summarize [flags]                  a bench run's "Load test" section (for docs/PERFORMANCE.md)
//	tpload nats-floor --nats-url URLS [flags] the JetStream work of one decision, raw, for comparison
//
// Every flag is also read from TPCLUSTER_<FLAG>. Exit status: 0 every send answered as its kind calls for; 1 any send
// failed (no answer, an unexpected answer, a jti allowed twice or never) or
// the run could not start; 2 invalid configuration, every problem listed.
// tpload --version prints the build.
//
// The code lives in internal/loadgen; this file reads flags and runs it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/tpcluster/tpcluster/internal/cliflag"
	"github.com/tpcluster/tpcluster/internal/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "tpload: %v\n", err)
		os.Exit(1)
	}
}

// errUsage is a configuration problem, already reported.
var errUsage = errors.New("usage")

// parseFlags parses args into fs, refuses positional arguments and runs
// validate, so that every problem is reported at once, under name, to
// stderr; the error is then errUsage (or flag.ErrHelp for -h).
func parseFlags(name string, fs *flag.FlagSet, args []string, validate func() error, stderr io.Writer) error {
	fs.SetOutput(stderr)
	err := cliflag.Parse(fs, args, nil)
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	if fs.NArg() > 0 {
		err = errors.Join(err, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if err := errors.Join(err, validate()); err != nil {
		fmt.Fprintf(stderr, "%s: invalid configuration:\n%v\n", name, err)
		return errUsage
	}
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if cliflag.IsVersion(args) {
		fmt.Fprintln(stdout, cliflag.Version("tpload"))
		return nil
	}
	if len(args) > 0 {
		switch args[0] {
		case "upstream":
			return serveUpstream(ctx, args[1:], stderr)
		case "proxy":
			return serveProxy(ctx, args[1:], stderr)
		case "summarize":
			return summarize(args[1:], stdout, stderr)
		case "nats-floor":
			return runFloor(ctx, args[1:], stdout, stderr)
		}
	}
	var c config
	if err := parseFlags("tpload", newFlagSet(&c), args, c.validate, stderr); err != nil {
		return err
	}
	dir := c.world
	if c.prepare != "" {
		files, err := loadgen.Prepare(c.prepare)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "tpload: world in %s: verifierd --trust-material %s --policy-bundle %s --bundle-public-key %s\n",
			c.prepare, files.TrustMaterial, files.PolicyBundle, files.BundlePublicKey)
		if len(c.targets) == 0 && c.mode != "ceiling" {
			return nil
		}
		dir = c.prepare
	}
	world, err := loadgen.LoadWorld(dir)
	if err != nil {
		return err
	}

	pc := loadgen.PlanConfig{
		World: world, Mix: *c.mix(), Sends: c.requests, Targets: max(1, len(c.targets)),
		FanOut: c.fanOut, Distinct: c.distinct, PassportTTL: c.ttl, Workers: runtime.GOMAXPROCS(0),
	}
	if c.mode == "ceiling" {
		// The ceiling verifies the same messages over and over; a few
		// thousand distinct ones are plenty and quick to sign.
		pc.Sends, pc.Targets, pc.FanOut, pc.Distinct, pc.Mix = min(c.requests, 4096), 1, false, 0, loadgen.Mix{Seed: c.seed}
	}
	plan, err := loadgen.NewPlan(pc)
	if err != nil {
		return err
	}

	var rep *loadgen.Report
	if c.mode == "ceiling" {
		rep, err = loadgen.Ceiling(ctx, loadgen.CeilingConfig{
			Plan: plan, Workers: c.ceilingWorkers(), Decisions: c.requests, Duration: c.duration,
		})
	} else {
		groups, _ := c.cpuGroups() // validated
		var progress io.Writer
		if !c.noProgress && (c.progress || isTerminal(os.Stderr)) {
			progress = stderr
		}
		rate := 0.0
		if c.mode == "open" {
			rate = c.rate
		}
		rep, err = loadgen.Run(ctx, loadgen.Config{
			Plan: plan, Targets: c.targets, Expect: c.expectKind(), Rate: rate, Workers: c.workers,
			Duration: c.duration, Timeout: c.timeout, CPU: groups, NATSMonitor: c.monitor, Progress: progress,
		})
	}
	if rep != nil {
		if werr := rep.WriteText(stdout); werr != nil && err == nil {
			err = werr
		}
		if c.jsonOut != "" {
			if werr := writeJSON(c.jsonOut, rep); werr != nil && err == nil {
				err = werr
			}
		}
		// A run whose requests failed is no measurement: a script must
		// not read its throughput as one.
		if e := rep.Errors; e.Total() > 0 && err == nil {
			err = fmt.Errorf("%d of %d sends failed (transport %d, unexpected answer %d, double allow %d, never allowed %d)",
				e.Total(), rep.Started, e.Transport, e.Unexpected, e.DoubleAllow, e.NeverAllowed)
		}
	}
	return err
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// isTerminal reports whether f is a character device, as a terminal is.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func serveUpstream(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("tpload upstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9000", "listen address (loopback)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return loadgen.ServeUpstream(ctx, *listen)
}

func serveProxy(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("tpload proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9100", "listen address (loopback)")
	upstream := fs.String("upstream", "", "upstream base URL, http://127.0.0.1:PORT")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return loadgen.ServePlainProxy(ctx, *listen, *upstream)
}
