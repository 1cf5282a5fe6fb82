// Command tpaudit reads the tpcluster audit stream (SPEC §9) for audit
// users: tail it with filters, verify that it is the whole and authentic
// record of the fleet (signatures, hash chains, checkpoints), export it as
// JSON lines (as stored, or OCSF API Activity objects) through a durable
// consumer (resumable), and count decisions by reason and route over a
// window.
//
//	tpaudit tail   [--outcome O] [--reason R] [--route ID] [--subject S] [--node N] [--since 10m|RFC3339] [--follow=false] [--text]
//	tpaudit explain [--since 24h] REQUEST_ID
//	tpaudit verify --bundle-public-key FILE [--trust-material FILE] [--checkpoint-max-age 10m] [--unsigned-before SEQ] [--allow-truncated-head]
//	tpaudit export [--durable NAME] [--out FILE] [--since ...] [--follow] [--format jsonl|ocsf]
//	tpaudit stats  [--window 1h] [--json]
//	tpaudit gather --regions eu,us [--base TRUSTPLANE_AUDIT] [--replicas 3] [--cluster eu]
//
// Every subcommand takes --nats-url and --stream; each flag is also read
// from TPCLUSTER_<FLAG> (SPEC §10.1).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/cliflag"
	"github.com/tpcluster/tpcluster/internal/natsx"
)

// exitProblems is verify's status when a chain is broken; 2 is bad usage,
// 1 is also any other failure.
const (
	exitProblems = 1
	exitUsage    = 2
)

const usage = `usage: tpaudit <command> [flags]

commands:
  tail     print events as they arrive (filters: --outcome --reason --route --subject --node --since)
  explain  print the decision of one request in words: tpaudit explain [--since 24h] REQUEST_ID
  verify   check every event's signature against the fleet in the signed trust material, every node's
           hash chain and checkpoints, and the stream's state against its limits; exit 1 on any problem
  export   write events as JSON lines (--format ocsf: OCSF API Activity) through a durable consumer; a rerun continues where it stopped
  stats    count decisions by reason and route over --window
  gather   make --stream the global stream of a multi-region fleet, sourcing every --regions stream

common flags: --nats-url (TPCLUSTER_NATS_URL), --stream (TPCLUSTER_STREAM),
  --nats-creds, --nats-ca, --nats-cert, --nats-key (TPCLUSTER_NATS_*): the audit-reader
  role's creds file and TLS (gather creates a stream: it needs the admin role's)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// command is one subcommand: its flags are added to fs, check (if set)
// judges them before anything connects, then exec runs it.
type command struct {
	flags func(fs *flag.FlagSet) func(ctx context.Context, c *client, out io.Writer) (int, error)
	// check reports every problem of the parsed flags and arguments at
	// once (errors.Join); nil means none to check.
	check func(fs *flag.FlagSet) error
	// arg names the one positional argument the command takes; empty: none.
	arg string
}

var commands = map[string]command{
	"tail":    {flags: tailFlags, check: tailCheck},
	"explain": {flags: explainFlags, check: explainCheck, arg: "REQUEST_ID"},
	"verify":  {flags: verifyFlags},
	"export":  {flags: exportFlags},
	"stats":   {flags: statsFlags},
	"gather":  {flags: gatherFlags},
}

func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return exitUsage
		}
		return 0
	}
	if cliflag.IsVersion(args) {
		fmt.Fprintln(stdout, cliflag.Version("tpaudit"))
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "tpaudit: unknown command %q\n%s", args[0], usage)
		return exitUsage
	}
	fs := flag.NewFlagSet("tpaudit "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	natsURL := fs.String("nats-url", nats.DefaultURL, "NATS server URLs (comma list)")
	stream := fs.String("stream", audit.DefaultStream, "audit stream")
	timeout := fs.Duration("connect-timeout", 5*time.Second, "bound of the first connection")
	var auth natsx.ClientAuth // the audit-reader role's credentials (gather: admin's)
	auth.RegisterFlags(fs)
	exec := cmd.flags(fs)
	err := cliflag.Parse(fs, args[1:], lookup)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	switch {
	case cmd.arg != "" && fs.NArg() != 1:
		err = errors.Join(err, fmt.Errorf("want one argument, %s; got %d", cmd.arg, fs.NArg()))
	case cmd.arg == "" && fs.NArg() > 0:
		err = errors.Join(err, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if cmd.check != nil {
		err = errors.Join(err, cmd.check(fs))
	}
	if err != nil {
		// Every problem at once, one line each, before anything connects.
		fmt.Fprintf(stderr, "tpaudit %s: %v\n", args[0], strings.ReplaceAll(err.Error(), "\n", "\ntpaudit "+args[0]+": "))
		return exitUsage
	}
	if errs := auth.Validate(time.Now()); len(errs) > 0 {
		fmt.Fprintf(stderr, "tpaudit %s: invalid configuration:\n%v\n", args[0], errors.Join(errs...))
		return exitUsage
	}
	c, err := connect(*natsURL, *stream, *timeout, &auth)
	if err != nil {
		fmt.Fprintf(stderr, "tpaudit %s: %v\n", args[0], err)
		if ce, ok := errors.AsType[*natsx.ConnectError](err); ok && ce.Permanent() {
			return exitUsage // refused TLS or credentials: configuration
		}
		return 1
	}
	defer c.nc.Close()
	c.stderr = stderr
	code, err := exec(ctx, c, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "tpaudit %s: %v\n", args[0], err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// client is a connection and the stream it reads.
type client struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream string
	stderr io.Writer // progress and summaries, apart from the data on stdout
}

func connect(url, stream string, timeout time.Duration, auth *natsx.ClientAuth) (*client, error) {
	nc, err := nats.Connect(url, append(auth.Options(), nats.Name("tpaudit"), nats.Timeout(timeout))...)
	if err != nil {
		// NewConnectError names the servers and the cause (nats.go says
		// only "no servers available").
		return nil, natsx.NewConnectError(url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &client{nc: nc, js: js, stream: stream}, nil
}

// parseSince reads --since: empty (no bound), a duration back from now, or
// an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q: want a duration such as 10m or an RFC 3339 time", s)
	}
	return t, nil
}
