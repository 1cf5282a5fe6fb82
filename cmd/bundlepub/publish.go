package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/bundlekv"
	"github.com/tpcluster/tpcluster/internal/cliflag"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/retry"
)

type publishConfig struct {
	NATSURL          string
	NATSAuth         natsx.ClientAuth // the bundlepub role's credentials
	TrustMaterial    string
	PolicyBundle     string
	BundlePublicKeys cliflag.List
	Watch            bool
	BeaconKey        string
	BeaconInterval   time.Duration
	BeaconIssuer     string
	Bucket           string
	Replicas         int
	Timeout          time.Duration
	LogLevel         string
	HealthListen     string
}

func parsePublish(args []string, stderr io.Writer) (*publishConfig, error) {
	c := new(publishConfig)
	fs := newFlagSet("publish", "--nats-url URL --trust-material F --policy-bundle F --bundle-public-key K [--watch] [--beacon-key NAME.key] [--beacon-interval 2s]",
		"Verifies both files as every verifier will (SPEC §8.1), refuses a sequence not above the\n"+
			"one already published, and puts each file's exact bytes into the KV bucket (creating it\n"+
			"if missing). Bytes identical to those published are not put again, so restarting\n"+
			"publish is normal. With --beacon-key it keeps signed freshness beacons flowing every\n"+
			"--beacon-interval (SPEC §8.3); with --watch it republishes when a file changes. With\n"+
			"neither it exits after publishing.\n", stderr)
	fs.StringVar(&c.NATSURL, "nats-url", "", "NATS server URLs, comma-separated (required)")
	c.NATSAuth.RegisterFlags(fs)
	fs.StringVar(&c.TrustMaterial, "trust-material", "", "signed trust material file (required)")
	fs.StringVar(&c.PolicyBundle, "policy-bundle", "", "signed policy bundle file (required)")
	fs.Var(&c.BundlePublicKeys, "bundle-public-key", "bundle-signing public key the fleet accepts, NAME.pub (repeatable; required)")
	fs.BoolVar(&c.Watch, "watch", false, "republish when either file changes")
	fs.StringVar(&c.BeaconKey, "beacon-key", "", "beacon private key, NAME.key; without it no beacons are sent and realtime routes go stale")
	fs.DurationVar(&c.BeaconInterval, "beacon-interval", 2*time.Second, "how often a freshness beacon is published")
	fs.StringVar(&c.BeaconIssuer, "beacon-issuer", "bundlepub", "signed_by.issuer of beacons")
	fs.StringVar(&c.Bucket, "bucket", bundlekv.DefaultBucket, "bundle channel KV bucket")
	fs.IntVar(&c.Replicas, "replicas", 1, "bucket replicas if publish creates it (3 in a cluster)")
	fs.DurationVar(&c.Timeout, "timeout", 5*time.Second, "bound of each NATS call")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.HealthListen, "health-listen", "", "serve /healthz (beacon loop running) and /readyz (beacons reaching NATS) on this address for probes; empty: off")
	if err := parseFlags(fs, args, false); err != nil {
		return nil, err
	}
	return c, c.Validate()
}

// Validate reports every problem.
func (c *publishConfig) Validate() error {
	var p problems
	p.required("nats-url", c.NATSURL)
	p = append(p, c.NATSAuth.Validate(time.Now())...)
	p.required("trust-material", c.TrustMaterial)
	p.required("policy-bundle", c.PolicyBundle)
	if len(c.BundlePublicKeys) == 0 {
		p.add("bundle-public-key", "", "at least one key is required: publish verifies as the fleet does")
	}
	if c.BeaconInterval <= 0 {
		p.add("beacon-interval", c.BeaconInterval, "must be positive")
	}
	if c.Timeout <= 0 {
		p.add("timeout", c.Timeout, "must be positive")
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		p.add("replicas", c.Replicas, "must be 1 to 5")
	}
	var l slog.Level
	if l.UnmarshalText([]byte(c.LogLevel)) != nil {
		p.add("log-level", c.LogLevel, "want debug, info, warn or error")
	}
	// The files too, before anything connects: a missing key is a
	// configuration problem (exit 2), named with its flag.
	for _, k := range c.BundlePublicKeys {
		if _, err := keyfile.ReadPublic(k); err != nil {
			p.add("bundle-public-key", k, err.Error())
		}
	}
	if c.BeaconKey != "" {
		if _, err := keyfile.ReadPrivate(c.BeaconKey); err != nil {
			p.add("beacon-key", c.BeaconKey, err.Error())
		}
	}
	for _, f := range []struct{ name, path string }{{"trust-material", c.TrustMaterial}, {"policy-bundle", c.PolicyBundle}} {
		if f.path == "" {
			continue
		}
		if fh, err := os.Open(f.path); err != nil {
			p.add(f.name, f.path, "cannot read: "+err.Error())
		} else {
			fh.Close()
		}
	}
	return p.err()
}

func runPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parsePublish(args, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel))
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	keys, err := readVerifyKeys(c.BundlePublicKeys)
	if err != nil {
		return err
	}
	var beaconKey *bundle.BeaconSigningKey
	if c.BeaconKey != "" {
		k, err := keyfile.ReadPrivate(c.BeaconKey)
		if err != nil {
			return fmt.Errorf("--beacon-key: %w", err)
		}
		bk := bundle.NewBeaconSigningKey(k)
		beaconKey = &bk
	}
	// The listener first: a taken port is a configuration error, reported
	// before anything is published.
	var healthLn net.Listener
	if c.HealthListen != "" {
		if healthLn, err = net.Listen("tcp", c.HealthListen); err != nil {
			return fmt.Errorf("--health-listen: %w", err)
		}
		defer healthLn.Close()
	}
	nc, err := connect(ctx, c.NATSURL, "bundlepub publish", &c.NATSAuth, c.Timeout, log)
	if err != nil {
		return err
	}
	defer closeConn(ctx, nc, log)
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	pub, err := bundlekv.NewPublisher(bundlekv.PublisherConfig{
		JetStream:      js,
		Bucket:         c.Bucket,
		Replicas:       c.Replicas,
		NoCreate:       c.NATSAuth.CredsFile != "", // the admin role creates it (issue 12)
		TrustMaterial:  c.TrustMaterial,
		PolicyBundle:   c.PolicyBundle,
		Options:        bundle.Options{Keys: keys},
		BeaconKey:      beaconKey,
		BeaconIssuer:   c.BeaconIssuer,
		BeaconInterval: c.BeaconInterval,
		Watch:          c.Watch,
		Timeout:        c.Timeout,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	res, err := publishAtStart(ctx, pub, log)
	if err != nil {
		return err
	}
	for _, r := range res {
		what := fmt.Sprintf("put, revision %d", r.Revision)
		if !r.Put {
			what = fmt.Sprintf("unchanged: these bytes are already published, revision %d", r.Revision)
		}
		fmt.Fprintf(stdout, "%s: sequence %d, sha256 %s: %s\n", r.Kind, r.Sequence, r.SHA256, what)
	}
	if beaconKey == nil && !c.Watch {
		return nil
	}
	fmt.Fprintf(stdout, "publishing: beacons %s, watch %t; Ctrl-C stops\n", beaconState(beaconKey, c.BeaconInterval), c.Watch)
	if healthLn == nil {
		return pub.Run(ctx)
	}
	h := &health{window: 3*c.BeaconInterval + c.Timeout, start: time.Now(), now: time.Now}
	if beaconKey != nil {
		h.times = pub.BeaconTimes
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return pub.Run(gctx) })
	g.Go(func() error { return serveHealth(gctx, healthLn, h, log) })
	return g.Wait()
}

func beaconState(k *bundle.BeaconSigningKey, every time.Duration) string {
	if k == nil {
		return "off"
	}
	return fmt.Sprintf("every %s (kid %s)", every, k.KID())
}

// connect connects to NATS and waits, at most timeout, for the first
// connection: a publishing host with no NATS should fail, not hang. Refused
// TLS or credentials are invalid configuration (exit 2).
func connect(ctx context.Context, urls, name string, auth *natsx.ClientAuth, timeout time.Duration, log *slog.Logger) (*nats.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nc, err := natsx.ConnectAuth(cctx, urls, name, auth, log)
	if ce, ok := errors.AsType[*natsx.ConnectError](err); ok && ce.Permanent() {
		return nil, &usageError{err}
	}
	if err != nil {
		return nil, err
	}
	for !nc.IsConnected() {
		select {
		case <-cctx.Done():
			cause := natsx.Unreachable(ctx, urls)
			if cause == nil {
				cause = nc.LastError()
			}
			nc.Close()
			return nil, fmt.Errorf("nats %s: not reachable within %s: %v", natsx.RedactURLs(urls), timeout, cause)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nc, nil
}

// closeConn drains nc with a bound; the command is ending anyway.
func closeConn(ctx context.Context, nc *nats.Conn, log *slog.Logger) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := natsx.DrainAndWait(dctx, nc); err != nil {
		log.Debug("nats drain", "err", err)
	}
}

// startRetryWindow bounds how long publish keeps retrying a first publish
// that failed for a transient reason.
const startRetryWindow = 30 * time.Second

// publishAtStart publishes, retrying with back-off while JetStream is not
// ready yet (a bucket just created has no stream leader for a moment, and
// its requests get no responders). A refusal (rollback, bad signature) is
// final at once.
func publishAtStart(ctx context.Context, pub *bundlekv.Publisher, log *slog.Logger) ([]bundlekv.Result, error) {
	deadline := time.Now().Add(startRetryWindow)
	bo := retry.Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	for {
		res, err := pub.Publish(ctx)
		if err == nil || !transient(err) || time.Now().After(deadline) {
			return res, err
		}
		wait := bo.Next()
		log.Warn("first publish failed; retrying", "err", err, "retry_in", wait)
		if !retry.Sleep(ctx, wait) {
			return nil, err
		}
	}
}

// transient reports errors that say JetStream did not answer yet, as
// opposed to an answer that refuses the documents.
func transient(err error) bool {
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) ||
		errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrDisconnected)
}
