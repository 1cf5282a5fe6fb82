// Command demoapi is the demo upstream of deploy/local: a small HTTP API
// that answers every request with JSON describing what reached it (method,
// target, body hash and the X-TrustPlane-* context headers a verifier or
// gateway added), so a user sees what an allowed request looks like on the
// far side.
//
// With --prepare DIR it serves nothing: it writes the demo world under DIR
// (a caller key and a bundle-signing key, 0600, and a signed trust material
// and policy bundle; internal/demo) and exits. Keys are generated at setup,
// never committed (SPEC §10.1).
//
// It reads flags only, no TPCLUSTER_* variables: those belong to verifierd
// and bundlepub, and a shell that sets TPCLUSTER_LISTEN for verifierd must
// not move the demo upstream. It holds no verification logic and must never be exposed beyond loopback:
// it trusts every header it is sent.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tpcluster/tpcluster/internal/cliflag"
	"github.com/tpcluster/tpcluster/internal/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintf(os.Stderr, "demoapi: %v\n", err)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "demoapi: %v\n", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("invalid usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if cliflag.IsVersion(args) {
		fmt.Fprintln(stdout, cliflag.Version("demoapi"))
		return nil
	}
	fs := flag.NewFlagSet("demoapi", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9000", "HTTP listen address (keep it on loopback)")
	prepare := fs.String("prepare", "", "write the demo keys and signed bundles under this directory and exit")
	var auditNodes cliflag.List
	fs.Var(&auditNodes, "audit-nodes", "with --prepare: node ids that get an audit key, listed in the trust material's audit_nodes (comma list)")
	if err := cliflag.Parse(fs, args, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if *prepare != "" {
		f, err := demo.Prepare(*prepare, auditNodes...)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "caller key %s\nbundle public key %s\ntrust material %s\npolicy bundle %s\n",
			f.CallerKey, f.BundlePublicKey, f.TrustMaterial, f.PolicyBundle)
		for _, n := range auditNodes {
			fmt.Fprintf(stdout, "audit key of %s %s\n", n, f.AuditKeys[n])
		}
		return nil
	}
	up, err := demo.StartUpstream(ctx, *listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "demoapi listening on %s\n", up.URL)
	<-ctx.Done()
	return up.Close()
}
