// Command bundlepub prepares, checks and publishes the documents that
// configure tpcluster verifiers (SPEC §10.3): policy bundles
// (trustplane-bundle-v1) and trust material (trustplane-trust-material-v1).
//
// Offline subcommands need no network and are where the bundle-signing
// private key lives: keygen writes key files, build turns a small authoring
// config into both documents, merge-source and remove-source add and remove a
// client, sign signs, verify checks files as a verifier would. publish puts
// signed documents into the cluster's bundle channel on NATS (SPEC §8.1) and
// status shows what every node holds; they run on a publishing host, which
// never needs the signing key.
//
// Every flag is also read from TPCLUSTER_<FLAG>. Exit status: 0 success, 1 a
// runtime failure (a file that does not verify, a refused edit), 2 invalid
// usage or configuration, with every problem listed.
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

	"github.com/tpcluster/tpcluster/internal/cliflag"
)

// command is one subcommand. run parses its own flags from args; an error
// wrapping a *usageError exits 2, any other error 1, flag.ErrHelp 0.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands is the dispatch table, in the order -h lists it.
func commands() []command {
	return []command{
		{"keygen", "write a new Ed25519 key pair (NAME.key, NAME.pub)", runKeygen},
		{"build", "build an unsigned policy bundle and trust material from an authoring config", runBuild},
		{"merge-source", "add a client key and a source rule admitting it to routes", runMergeSource},
		{"remove-source", "remove a client key and the source rules that admitted it", runRemoveSource},
		{"sign", "sign a policy bundle or trust material", runSign},
		{"verify", "check that files verify and load as a verifier would", runVerify},
		{"publish", "publish signed documents to the NATS bundle channel, with freshness beacons", runPublish},
		{"status", "show the bundle sequence and digest every live node holds", runStatus},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches args to a subcommand and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if cliflag.IsVersion(args) {
		fmt.Fprintln(stdout, cliflag.Version("bundlepub"))
		return 0
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return exitStatus(c.name, c.run(ctx, args[1:], stdout, stderr), stderr)
		}
	}
	fmt.Fprintf(stderr, "bundlepub: unknown subcommand %q\n\n", args[0])
	usage(stderr)
	return 2
}

// exitStatus reports err, if any, and maps it to the exit status.
func exitStatus(name string, err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	prefix := "bundlepub " + name + ": "
	if ue, ok := errors.AsType[*usageError](err); ok {
		fmt.Fprintf(stderr, "%sinvalid configuration:\n", prefix)
		for line := range strings.Lines(ue.Error()) {
			fmt.Fprintf(stderr, "  %s", line)
		}
		fmt.Fprintln(stderr)
		return 2
	}
	msg := err.Error()
	if strings.HasPrefix(msg, prefix) { // the placeholders name themselves
		prefix = ""
	}
	fmt.Fprintf(stderr, "%s%s\n", prefix, msg)
	return 1
}

func usage(w io.Writer) {
	fmt.Fprint(w, `bundlepub prepares, checks and publishes tpcluster policy bundles and trust material.

Usage: bundlepub <subcommand> [flags]

Subcommands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
"bundlepub <subcommand> -h" lists a subcommand's flags; "bundlepub --version" the build. Every flag is also
read from TPCLUSTER_<FLAG> (upper case, "-" as "_"; lists comma-separated).
Exit status: 0 success, 1 failure, 2 invalid usage or configuration.
`)
}
