// Command chart renders the JSON reports of one loadtest/bench.sh run
// (tpload --json) as SVG (or PNG) charts: latency percentiles against throughput,
// one chart per scenario and one comparing them, and CPU per decision by
// component for each scenario.
//
// It lives outside cmd/ so the plotting library never reaches a verifier
// binary; it reads files and writes files, nothing else.
//
//	go run ./loadtest/chart --results loadtest/results --out docs/perf
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	if err := execute(os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "chart:", err)
		os.Exit(exitCode(err))
	}
}

// usageError is a bad command line: exit status 2, as the other commands.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func exitCode(err error) int {
	var u *usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

func execute(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("chart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	results := fs.String("results", "loadtest/results", "directory of the bench's tpload JSON reports")
	out := fs.String("out", "", "directory the SVG files are written to (created if missing; default: --results)")
	format := fs.String("format", "svg", "svg (for docs: small, sharp at any size) or png")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	if *format != "svg" && *format != "png" {
		return &usageError{fmt.Sprintf("--format=%q: must be svg or png", *format)}
	}
	if *out == "" {
		*out = *results
	}
	runs, err := readRuns(*results)
	if err != nil {
		return err
	}
	files, err := render(runs, *out, *format)
	if err != nil {
		return err
	}
	for _, f := range files {
		fmt.Fprintln(stderr, "chart: wrote", f)
	}
	return nil
}
