package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/tpcluster/tpcluster/internal/cliflag"
)

// usageError is invalid usage or configuration: the command exits 2 before
// doing anything (STYLE §4). It holds every problem found.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// newFlagSet returns the FlagSet of subcommand name. synopsis and about
// head its -h output.
func newFlagSet(name, synopsis, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("bundlepub "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: bundlepub %s %s\n\n%s\nFlags (each also from TPCLUSTER_<FLAG>):\n", name, synopsis, about)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, then fills unset flags from the environment
// (explicit flag, then TPCLUSTER_<FLAG>, then default). It returns
// flag.ErrHelp for -h and a *usageError for anything malformed.
// Positional arguments are refused unless positional is true.
func parseFlags(fs *flag.FlagSet, args []string, positional bool) error {
	err := cliflag.Parse(fs, args, nil)
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	if !positional && fs.NArg() > 0 {
		err = errors.Join(err, fmt.Errorf("unexpected arguments: %q", fs.Args()))
	}
	if err != nil {
		return &usageError{err}
	}
	return nil
}

// problems collects configuration problems so Validate reports all of them.
type problems []error

func (p *problems) add(name string, value any, msg string) {
	*p = append(*p, cliflag.Problem(name, value, msg))
}

// required adds a problem when value is empty.
func (p *problems) required(name, value string) {
	if value == "" {
		p.add(name, value, "required")
	}
}

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return &usageError{errors.Join(p...)}
}

// optionalInt is an integer flag that knows whether it was given, for
// flags whose absence means "leave as is" (sign --sequence).
type optionalInt struct {
	set bool
	v   int64
}

func (o *optionalInt) String() string {
	if o == nil || !o.set {
		return ""
	}
	return strconv.FormatInt(o.v, 10)
}

func (o *optionalInt) Set(s string) error {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return errors.New("not an integer")
	}
	o.v, o.set = v, true
	return nil
}

// maxSequence is 2^53-1, the largest sequence a document can carry exactly
// (RFC 8785 writes numbers as doubles).
const maxSequence = 1<<53 - 1

func checkSequence(p *problems, name string, v int64) {
	if v < 0 || v > maxSequence {
		p.add(name, v, "must be 0 to 2^53-1")
	}
}

// parseIssuedAt reads an --issued-at value: "now" or an RFC 3339 time.
func parseIssuedAt(s string, now time.Time) (time.Time, error) {
	if strings.EqualFold(s, "now") {
		return now.UTC().Truncate(time.Second), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New(`want "now" or an RFC 3339 time`)
	}
	return t.UTC(), nil
}
