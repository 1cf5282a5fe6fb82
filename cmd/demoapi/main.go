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
// With --jwks-url it verifies each X-TrustPlane-Assertion it receives with
// package backendjwt and says in its echo whether it verified, and the
// claims (docs/BACKEND-JWT.md).
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
	jwksURL := fs.String("jwks-url", "", "verify X-TrustPlane-Assertion against this fleet JWKS (a verifierd's /_tp/jwks.json) and say in the echo whether it verified")
	assertionIssuer := fs.String("assertion-issuer", demo.AssertionIssuer, "with --jwks-url: the fleet's assertion issuer")
	backendAudience := fs.String("backend-audience", demo.BackendAudience, "with --jwks-url: this upstream's backend audience")
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
			fmt.Fprintf(stdout, "assertion key of %s %s\n", n, f.AssertionKeys[n])
		}
		return nil
	}
	up, err := demo.StartUpstream(ctx, *listen)
	if err != nil {
		return err
	}
	if *jwksURL != "" {
		if err := up.VerifyAssertions(*jwksURL, *assertionIssuer, *backendAudience); err != nil {
			up.Close()
			return err
		}
	}
	fmt.Fprintf(stderr, "demoapi listening on %s\n", up.URL)
	<-ctx.Done()
	return up.Close()
}
