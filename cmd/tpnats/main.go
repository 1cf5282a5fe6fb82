// Command tpnats sets up NATS least privilege for tpcluster (issue 12,
// docs/NATS-SECURITY.md).
//
//	tpnats init  --dir DIR [--host NAME]... [--user-ttl 8760h] [--cert-ttl 8760h]
//	tpnats setup --nats-url URL --nats-creds DIR/admin.creds --nats-ca DIR/ca.pem [sizes]
//	tpnats rotate --dir DIR --role ROLE [--user-ttl 8760h]
//	tpnats probe --url http://127.0.0.1:8222/healthz
//
// init writes an operator, the accounts and one creds file per role
// (verifier, bundlepub, audit-reader, admin; 0600), a CA and server and
// client certificates, and the nats-server fragments auth.conf and
// tls.conf. setup connects as admin and creates the replay bucket, the
// bundle bucket and the audit stream, locked (deny_delete, deny_purge):
// the other roles may not create or change them. Both are idempotent in
// effect: init refuses to overwrite a set, setup keeps what exists. probe
// lets a pod check its nats-server's health while the monitoring listener,
// which has no authentication, stays on loopback.
//
// Every flag is also read from TPCLUSTER_<FLAG>. Exit status: 0 success, 1
// failure, 2 invalid usage or configuration (a refused credential included).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/bundlekv"
	"github.com/tpcluster/tpcluster/internal/cliflag"
	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/natsauth"
	"github.com/tpcluster/tpcluster/internal/natsx"
)

const usage = `usage: tpnats <command> [flags]

commands:
  init    write credentials (one creds file per role), a CA, certificates and nats-server fragments into --dir
  setup   as admin, create and lock the replay bucket, the bundle bucket and the audit stream
  rotate  issue --role a new creds file and revoke the old one (then reload nats-server)
  probe   GET a nats-server monitoring URL on loopback: exit 0 on 200 (a Kubernetes exec probe)

"tpnats <command> -h" lists its flags; each is also read from TPCLUSTER_<FLAG>.
`

const (
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "init":
		return runInit(args[1:], lookup, stdout, stderr)
	case "setup":
		return runSetup(ctx, args[1:], lookup, stdout, stderr)
	case "rotate":
		return runRotate(args[1:], lookup, stdout, stderr)
	case "probe":
		return runProbe(ctx, args[1:], lookup, stdout, stderr)
	}
	fmt.Fprintf(stderr, "tpnats: unknown command %q\n%s", args[0], usage)
	return exitUsage
}

// parse parses args into fs, then the environment. It returns an exit
// status and whether to stop.
func parse(fs *flag.FlagSet, args []string, lookup func(string) (string, bool), stderr io.Writer) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, true
		}
		return exitUsage, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return exitUsage, true
	}
	if err := cliflag.ApplyEnv(fs, lookup); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		return exitUsage, true
	}
	return 0, false
}

func invalid(stderr io.Writer, name string, errs []error) int {
	fmt.Fprintf(stderr, "%s: invalid configuration:\n", name)
	for _, e := range errs {
		fmt.Fprintf(stderr, "  %v\n", e)
	}
	return exitUsage
}

func runInit(args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tpnats init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "directory to write the set into (created 0700; must not hold one already)")
	var hosts, regions cliflag.List
	fs.Var(&hosts, "host", "DNS name or IP the server certificate is valid for, besides loopback (repeatable)")
	userTTL := fs.Duration("user-ttl", 365*24*time.Hour, "validity of the role credentials (0: no expiry)")
	certTTL := fs.Duration("cert-ttl", 365*24*time.Hour, "validity of the certificates")
	ledgerBucket := fs.String("ledger-bucket", ledger.DefaultBucket, "replay ledger bucket the verifier role may write (verifierd --ledger-bucket)")
	bundleBucket := fs.String("bundle-bucket", bundlekv.DefaultBucket, "bundle bucket (bundlepub --bucket)")
	auditStream := fs.String("audit-stream", audit.DefaultStream, "audit stream (verifierd --audit-stream)")
	fs.Var(&regions, "regions", "regions of a multi-region fleet: their ledger buckets and audit streams too (comma list)")
	initShards := fs.Int("ledger-shards", 1, "verifierd --ledger-shards: the verifier role may write each shard bucket")
	initShardsPrev := fs.Int("ledger-shards-previous", 0, "verifierd --ledger-shards-previous, during a reshard")
	if code, stop := parse(fs, args, lookup, stderr); stop {
		return code
	}
	var errs []error
	if *dir == "" {
		errs = append(errs, cliflag.Problem("dir", "", "required"))
	}
	if *userTTL < 0 {
		errs = append(errs, cliflag.Problem("user-ttl", *userTTL, "must not be negative"))
	}
	if *certTTL <= 0 {
		errs = append(errs, cliflag.Problem("cert-ttl", *certTTL, "must be positive"))
	}
	errs = append(errs, checkShards(*initShards, *initShardsPrev)...)
	if len(errs) > 0 {
		return invalid(stderr, fs.Name(), errs)
	}
	err := natsauth.Generate(natsauth.Options{
		Dir:     *dir,
		Hosts:   hosts,
		UserTTL: *userTTL,
		CertTTL: *certTTL,
		Names: natsauth.Names{LedgerBucket: *ledgerBucket, BundleBucket: *bundleBucket, AuditStream: *auditStream, Regions: regions,
			LedgerShards: *initShards, LedgerShardsPrevious: *initShardsPrev},
	})
	if err != nil {
		fmt.Fprintf(stderr, "tpnats init: %v\n", err)
		if errors.Is(err, os.ErrExist) {
			return exitUsage
		}
		return exitFailure
	}
	abs, _ := filepath.Abs(*dir)
	fmt.Fprintf(stdout, "wrote a NATS security set into %s:\n", abs)
	for _, r := range natsauth.Roles() {
		fmt.Fprintf(stdout, "  %-20s the %s role's credential (0600)\n", natsauth.CredsFile(r), r)
	}
	fmt.Fprintf(stdout, `  %-20s CA clients check the server with (--nats-ca)
  %-20s nats-server: operator, accounts (include it in the server's config)
  %-20s nats-server: TLS of the client listener
  %-20s client certificate for mutual TLS (--nats-cert, --nats-key)

next: start nats-server with both fragments, then create the streams as admin:
  tpnats setup --nats-url tls://127.0.0.1:4222 --nats-creds %s --nats-ca %s
`, natsauth.CAFile, natsauth.AuthConfFile, natsauth.TLSConfFile, natsauth.ClientCertFile,
		filepath.Join(abs, natsauth.CredsFile(natsauth.Admin)), filepath.Join(abs, natsauth.CAFile))
	return 0
}

func runSetup(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	// The connection's handlers log from their own goroutine.
	stderr = &syncWriter{w: stderr}
	fs := flag.NewFlagSet("tpnats setup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("nats-url", "", "NATS server URLs, comma-separated (required)")
	var auth natsx.ClientAuth
	auth.RegisterFlags(fs)
	timeout := fs.Duration("timeout", 30*time.Second, "bound of the whole setup")
	ledgerBucket := fs.String("ledger-bucket", ledger.DefaultBucket, "replay ledger bucket (verifierd --ledger-bucket)")
	ledgerReplicas := fs.Int("ledger-replicas", 1, "replay ledger replicas (3 in a cluster)")
	shards := fs.Int("ledger-shards", 1, "verifierd --ledger-shards: one bucket, or <bucket>_s0.. (docs/LEDGER-SHARDS.md)")
	shardsPrev := fs.Int("ledger-shards-previous", 0, "verifierd --ledger-shards-previous, during a reshard")
	lifetime := fs.Duration("max-passport-lifetime", 900*time.Second, "verifierd --max-passport-lifetime: with twice --clock-skew, the ledger's max age")
	skew := fs.Duration("clock-skew", 30*time.Second, "verifierd --clock-skew")
	region := fs.String("region", "", "a region of a multi-region fleet: its ledger bucket and audit stream (docs/MULTI-REGION.md)")
	bundleBucket := fs.String("bundle-bucket", bundlekv.DefaultBucket, "bundle bucket (bundlepub --bucket)")
	bundleReplicas := fs.Int("bundle-replicas", 1, "bundle bucket replicas (3 in a cluster)")
	auditStream := fs.String("audit-stream", audit.DefaultStream, "audit stream (verifierd --audit-stream)")
	auditReplicas := fs.Int("audit-replicas", 1, "audit stream replicas (3 in a cluster)")
	auditMaxAge := fs.Duration("audit-max-age", 30*24*time.Hour, "audit stream retention by age")
	auditMaxBytes := fs.Int64("audit-max-bytes", audit.DefaultMaxBytes, "audit stream retention by size, reserved on each replica's server: at most half its max_file_store (-1: unlimited)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if code, stop := parse(fs, args, lookup, stderr); stop {
		return code
	}
	var errs []error
	if *url == "" {
		errs = append(errs, cliflag.Problem("nats-url", "", "required"))
	}
	if auth.CredsFile == "" {
		errs = append(errs, cliflag.Problem("nats-creds", "", "required: the admin role's creds file"))
	}
	errs = append(errs, auth.Validate(time.Now())...)
	for _, r := range []struct {
		name string
		v    int
	}{{"ledger-replicas", *ledgerReplicas}, {"bundle-replicas", *bundleReplicas}, {"audit-replicas", *auditReplicas}} {
		if r.v < 1 || r.v > 5 {
			errs = append(errs, cliflag.Problem(r.name, r.v, "must be 1 to 5"))
		}
	}
	errs = append(errs, checkShards(*shards, *shardsPrev)...)
	if *lifetime <= 0 || *skew < 0 {
		errs = append(errs, cliflag.Problem("max-passport-lifetime", *lifetime, "must be positive, with a --clock-skew not negative"))
	}
	var level slog.Level
	if level.UnmarshalText([]byte(*logLevel)) != nil {
		errs = append(errs, cliflag.Problem("log-level", *logLevel, "want debug, info, warn or error"))
	}
	if len(errs) > 0 {
		return invalid(stderr, fs.Name(), errs)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	nc, err := natsx.ConnectAuth(ctx, *url, "tpnats setup", &auth, log)
	if err != nil {
		fmt.Fprintf(stderr, "tpnats setup: %v\n", err)
		if ce, ok := errors.AsType[*natsx.ConnectError](err); ok && ce.Permanent() {
			return exitUsage
		}
		return exitFailure
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintf(stderr, "tpnats setup: jetstream: %v\n", err)
		return exitFailure
	}
	bucket := *ledgerBucket
	stream := audit.StreamConfig{Name: *auditStream, Replicas: *auditReplicas, MaxAge: *auditMaxAge, MaxBytes: *auditMaxBytes}
	if *region != "" {
		bucket = ledger.BucketFor(*ledgerBucket, *region)
		stream.Name, stream.Region, stream.Cluster = audit.RegionStream(*auditStream, *region), *region, *region
	}
	err = natsauth.Provision(ctx, js, natsauth.ProvisionConfig{
		LedgerBucket:   bucket,
		LedgerReplicas: *ledgerReplicas,
		LedgerMaxAge:   *lifetime + 2**skew,
		LedgerCluster:  stream.Cluster,
		LedgerShards:   *shards, LedgerShardsPrevious: *shardsPrev,
		BundleBucket:   *bundleBucket,
		BundleReplicas: *bundleReplicas,
		Audit:          stream,
		Logger:         log,
	})
	if err != nil {
		fmt.Fprintf(stderr, "tpnats setup: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "ready: replay bucket %s, bundle bucket %s, audit stream %s (locked: deny_delete, deny_purge)\n",
		bucket, *bundleBucket, strings.TrimSpace(stream.Name))
	return 0
}

// syncWriter serialises writes from the log handler and the command.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func runProbe(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tpnats probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("url", "http://127.0.0.1:8222/healthz", "monitoring URL, on loopback")
	timeout := fs.Duration("timeout", 2*time.Second, "bound of the request")
	if code, stop := parse(fs, args, lookup, stderr); stop {
		return code
	}
	u, err := url.Parse(*target)
	if err != nil || u.Scheme != "http" || !loopback(u.Hostname()) {
		return invalid(stderr, fs.Name(), []error{cliflag.Problem("url", *target, "want an http:// URL on a loopback address")})
	}
	if *timeout <= 0 {
		return invalid(stderr, fs.Name(), []error{cliflag.Problem("timeout", *timeout, "must be positive")})
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		fmt.Fprintf(stderr, "tpnats probe: %v\n", err)
		return exitFailure
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "tpnats probe: %v\n", err)
		return exitFailure
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "tpnats probe: %s: %s %s\n", u, resp.Status, strings.TrimSpace(string(body)))
		return exitFailure
	}
	fmt.Fprintf(stdout, "%s\n", strings.TrimSpace(string(body)))
	return 0
}

// loopback reports whether host is a loopback address or localhost.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// checkShards checks --ledger-shards and --ledger-shards-previous as
// verifierd does.
func checkShards(n, prev int) []error {
	var errs []error
	if n < 1 || n > ledger.MaxShards {
		errs = append(errs, cliflag.Problem("ledger-shards", n, fmt.Sprintf("must be 1 to %d", ledger.MaxShards)))
	}
	if prev < 0 || prev > ledger.MaxShards {
		errs = append(errs, cliflag.Problem("ledger-shards-previous", prev, fmt.Sprintf("must be 0 (no reshard) to %d", ledger.MaxShards)))
	}
	return errs
}
