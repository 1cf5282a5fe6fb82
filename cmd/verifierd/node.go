package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/tpcluster/tpcluster/internal/assertion"
	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/bundlekv"
	"github.com/tpcluster/tpcluster/internal/cliflag"
	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/demo"
	"github.com/tpcluster/tpcluster/internal/egress"
	"github.com/tpcluster/tpcluster/internal/extauthz"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/natsauth"
	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/nodeaudit"
	"github.com/tpcluster/tpcluster/internal/proxy"
	"github.com/tpcluster/tpcluster/internal/readiness"
	"github.com/tpcluster/tpcluster/internal/retry"
	"github.com/tpcluster/tpcluster/internal/telemetry"
)

// node is one running verifierd: every component, built by newNode and run
// by Run.
type node struct {
	cfg *Config
	log *slog.Logger
	out io.Writer // the demo's transcript

	upstream *demo.Upstream // --demo only
	demo     *demo.Files    // --demo only
	embedded *natsx.Server  // nil with --nats-url
	nc       *nats.Conn
	tel      *telemetry.Providers
	aud      *nodeaudit.Auditor
	minter   *assertion.Minter // nil without --assertion-key or --assertion-key-dir
	keys     *assertionKeys    // nil without --assertion-key-dir
	// reload delivers SIGHUP (main's signal.Notify): re-read
	// --assertion-key-dir. Nil in tests that send none.
	reload   <-chan os.Signal
	egress   *egress.Client   // nil in check mode (no --upstream)
	deferred *ledger.Deferred // set when bundles come from NATS
	health   *ledger.Health
	bundles  bundleSource
	ready    *readiness.Readiness
	srv      *http.Server
	ln       net.Listener
	pprof    net.Listener     // nil without --pprof-listen
	grpc     *grpc.Server     // nil without --grpc-listen
	authz    *extauthz.Server // nil without --grpc-listen
	grpcLn   net.Listener     // nil without --grpc-listen
	// auditProvisionErr is why the embedded server's audit stream could
	// not be created at start, or nil; set before Run, read only after.
	auditProvisionErr error

	undo []func() // what newNode started, in order; abort runs it backwards
}

// newNode builds and starts every component of a node, and listens. On any
// error it stops whatever it had started, in reverse order, and returns the
// error: nothing (goroutine, connection, listener, embedded server) is left.
// On success the caller must call Run.
func newNode(ctx context.Context, cfg *Config, log *slog.Logger, out io.Writer) (_ *node, err error) {
	n := &node{cfg: cfg, log: log, out: out}
	defer func() {
		if err != nil {
			n.abort()
		}
	}()
	if cfg.Demo {
		if err := n.prepareDemo(ctx); err != nil {
			return nil, err
		}
	}
	if cfg.DevAllowUnsigned {
		log.Warn("DEVELOPMENT MODE: --dev-allow-unsigned-bundles loads unsigned trust material and policy; never use it in production")
	}
	log.Info("verifierd starting", cfg.logValues()...)
	nodeID := cfg.nodeID()
	// Before anything listens: a bad key file stops the node here.
	auditKey, err := readAuditKey(cfg.AuditKey)
	if err != nil {
		return nil, err
	}
	if n.minter, n.keys, err = readAssertionKeys(cfg, n.listedAssertionKeys, log); err != nil {
		return nil, err
	}

	js, err := n.connect(ctx, nodeID)
	if err != nil {
		return nil, err
	}
	if n.tel, err = telemetry.New(ctx, telemetry.Config{ServiceName: "verifierd", NodeID: nodeID}); err != nil {
		return nil, err
	}
	n.onAbort(func() { n.stopTelemetry(context.Background()) })
	if n.keys != nil {
		if err := n.keys.registerMetric(n.tel.Meter); err != nil {
			return nil, err
		}
	}
	// Before the bundles: its check decides which policies this node takes.
	if n.egress, err = newEgressClient(cfg, n.tel.Meter); err != nil {
		return nil, err
	}

	// Audit before bundles: the first bundle_applied events go to the spool.
	if n.aud, err = nodeaudit.Open(n.auditConfig(nodeID, auditKey)); err != nil {
		return nil, err
	}
	n.onAbort(n.aud.Close)

	var led ledger.Replay
	if cfg.bundlesFromNATS() {
		// SPEC §8.2: a node decides from its cached pair before NATS
		// answers, so the ledger opens in the background.
		n.deferred = ledger.NewDeferred(func(ctx context.Context) (ledger.Replay, error) {
			return openLedger(ctx, js, cfg, nodeID, log, n.tel)
		})
		led = n.deferred
	} else if led, err = openLedger(ctx, js, cfg, nodeID, log, n.tel); err != nil {
		return nil, err
	}
	keys, err := readBundleKeys(cfg.BundlePublicKeys)
	if err != nil {
		return nil, err
	}
	if n.bundles, err = newBundleSource(cfg, js, keys, n.egressCheck(), n.onTrustApplied, nodeID, log, n.tel, n.aud); err != nil {
		return nil, err
	}
	if n.ready, err = readiness.New(readiness.Config{Snapshot: n.bundles.Snapshot, RealtimeWindow: cfg.RealtimeWindow}); err != nil {
		return nil, err
	}
	// readyz says 503 within about 1.5 s of the ledger ceasing to
	// take writes (quorum lost, this node's server cut off), from a probe
	// write and the outcomes of real consumes; it never waits on NATS.
	if n.health, err = ledger.NewHealth(ledger.HealthConfig{Ledger: led, Logger: log.With("component", "ledger")}); err != nil {
		return nil, err
	}
	if err := n.ready.Add("ledger", n.health.Check); err != nil {
		return nil, err
	}
	missing, err := n.tel.Meter.Meter("github.com/tpcluster/tpcluster/cmd/verifierd").Int64Counter("tpcluster.nats.stream_missing",
		metric.WithUnit("{event}"),
		metric.WithDescription("Times a readiness check found a NATS stream the node uses gone (audit stream, bundle bucket), by stream; verifiers never recreate one."))
	if err != nil {
		return nil, err
	}
	// The publisher's view (a stream it could not create or use) and a
	// look-up: a stream deleted while no event flows shows too (issue 12).
	// The look-ups run in the background (readiness.Background): without a
	// quorum one blocks for its whole timeout, and readyz must still answer.
	auditLookup := readiness.Background(streamCheck(js, n.auditStream().Name, log, missing), 2*time.Second)
	if err := n.ready.Add("audit_stream", func(ctx context.Context) error {
		if n.auditProvisionErr != nil {
			// The embedded server refused to create it at start.
			if err := auditLookup(ctx); err != nil {
				return n.auditProvisionErr
			}
		}
		if err := n.aud.CheckStream(ctx); err != nil {
			return err
		}
		return auditLookup(ctx)
	}); err != nil {
		return nil, err
	}
	if err := n.ready.Add("audit_spool", n.aud.CheckBacklog(cfg.ReadyMaxAuditPending)); err != nil {
		return nil, err
	}
	if cfg.bundlesFromNATS() {
		if err := n.ready.Add("bundle_bucket", readiness.Background(streamCheck(js, "KV_"+bundlekv.DefaultBucket, log, missing), 2*time.Second)); err != nil {
			return nil, err
		}
	}
	if err := n.buildServer(n.health); err != nil {
		return nil, err
	}
	if err := n.listen(ctx); err != nil {
		return nil, err
	}
	log.Info("verifierd listening", "addr", n.ln.Addr().String(), "node_id", nodeID, "mode", mode(cfg))
	return n, nil
}

// onAbort registers f to undo a step if a later one fails.
func (n *node) onAbort(f func()) { n.undo = append(n.undo, f) }

// abort undoes every step newNode took, latest first, once.
func (n *node) abort() {
	for i := len(n.undo) - 1; i >= 0; i-- {
		n.undo[i]()
	}
	n.undo = nil
}

// prepareDemo writes the demo keys and bundles, starts the demo upstream
// and points the configuration at them.
func (n *node) prepareDemo(ctx context.Context) error {
	// The demo node signs its audit trail with a key of its own, listed
	// in the demo trust material (docs/AUDIT.md).
	d, err := demo.Prepare(filepath.Join(n.cfg.DataDir, "demo"), n.cfg.nodeID())
	if err != nil {
		return err
	}
	up, err := demo.StartUpstream(ctx, "127.0.0.1:0")
	if err != nil {
		return err
	}
	n.onAbort(func() { up.Close() })
	n.upstream, n.demo = up, d
	cfg := n.cfg
	cfg.Upstream, cfg.TrustMaterial, cfg.PolicyBundle = up.URL, d.TrustMaterial, d.PolicyBundle
	cfg.BundlePublicKeys = append(cfg.BundlePublicKeys[:0], d.BundlePublicKey)
	if cfg.AuditKey == "" {
		cfg.AuditKey = d.AuditKeys[cfg.nodeID()]
	}
	// The demo policy asks for a backend assertion on orders.get
	// (docs/BACKEND-JWT.md); the demo upstream verifies it.
	if !cfg.hasAssertionKeys() {
		cfg.AssertionKey, cfg.AssertionIssuer = cliflag.List{d.AssertionKeys[cfg.nodeID()]}, demo.AssertionIssuer
		cfg.AssertionPublicKeys = append(cfg.AssertionPublicKeys[:0], d.AssertionPublicKeys...)
	}
	return cfg.Validate()
}

// connect starts the embedded NATS server unless --nats-url names a
// cluster, and connects to it with the verifier role's credential.
//
// The embedded server runs in operator mode with the credentials it writes
// into <data-dir>/nats-auth on first start (0600; reused afterwards, since
// JetStream keeps its data under the account): every client needs one
// (issue 12). The node first connects as admin to create and lock the
// streams, then works as verifier, which may not create or change them.
func (n *node) connect(ctx context.Context, nodeID string) (jetstream.JetStream, error) {
	url := n.cfg.NATSURL
	auth := &n.cfg.NATSAuth
	if url == "" {
		dir := filepath.Join(n.cfg.DataDir, "nats-auth")
		if !natsauth.Exists(dir) {
			if err := natsauth.Generate(natsauth.Options{Dir: dir, Names: n.cfg.natsNames()}); err != nil {
				return nil, err
			}
			n.log.Info("embedded NATS credentials written", "dir", dir)
		}
		s, err := natsx.StartServer(ctx, natsx.ServerConfig{
			DataDir:     filepath.Join(n.cfg.DataDir, "nats"),
			Listen:      n.cfg.NATSListen,
			ServerName:  "verifierd-" + sanitize(nodeID),
			SyncAlways:  n.cfg.LedgerSync == "always",
			Logger:      n.log.With("component", "nats-server"),
			ConfigFiles: []string{filepath.Join(dir, natsauth.AuthConfFile)},
		})
		if err != nil {
			return nil, err
		}
		n.embedded = s
		n.onAbort(n.stopEmbedded)
		url = s.ClientURL()
		n.log.Info("embedded NATS server started", "url", url, "credentials", dir)
		err = n.provision(ctx, url, filepath.Join(dir, natsauth.CredsFile(natsauth.Admin)))
		if errors.Is(err, natsauth.ErrAuditStream) {
			// The node runs and spools (SPEC §9); readyz names the
			// cause (issue 13). Only a restart retries the creation:
			// the verifier role may not create streams.
			n.log.Error("audit stream cannot be created; events stay in the spool", "stream", n.auditStream().Name, "err", err)
			n.auditProvisionErr = err
		} else if err != nil {
			return nil, err
		}
		auth = &natsx.ClientAuth{CredsFile: filepath.Join(dir, natsauth.CredsFile(natsauth.Verifier))}
		if errs := auth.Validate(time.Now()); len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
	}
	nc, err := natsx.ConnectAuth(ctx, url, "verifierd "+nodeID, auth, n.log.With("component", "nats"))
	if err != nil {
		return nil, err
	}
	n.nc = nc
	n.onAbort(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return js, nil
}

// provision creates and locks the embedded server's streams as admin.
func (n *node) provision(ctx context.Context, url, adminCreds string) error {
	auth := &natsx.ClientAuth{CredsFile: adminCreds}
	if errs := auth.Validate(time.Now()); len(errs) > 0 {
		return errors.Join(errs...)
	}
	nc, err := natsx.ConnectAuth(ctx, url, "verifierd admin", auth, n.log.With("component", "nats"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream := n.auditStream()
	return natsauth.Provision(pctx, js, natsauth.ProvisionConfig{
		LedgerBucket:         n.cfg.ledgerBucket(),
		LedgerReplicas:       n.cfg.LedgerReplicas,
		LedgerMaxAge:         n.cfg.ledgerMaxAge(),
		LedgerShards:         n.cfg.LedgerShards,
		LedgerShardsPrevious: n.cfg.LedgerShardsPrev,
		BundleReplicas:       n.cfg.BundleReplicas,
		Audit:                stream,
		Logger:               n.log.With("component", "nats-admin"),
	})
}

// streamCheck is a readiness check that a stream the node uses exists: a
// verifier never recreates one (issue 12), so a deleted bucket or stream
// must show, not fail requests quietly. The first failure after success is
// logged at Error and counted.
func streamCheck(js jetstream.JetStream, name string, log *slog.Logger, counter metric.Int64Counter) func(context.Context) error {
	var missing atomic.Bool
	attrs := metric.WithAttributes(attribute.String("stream", name))
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			err = fmt.Errorf("stream %s is gone; only the admin role recreates it (tpnats setup, docs/NATS-SECURITY.md): %w", name, err)
			if !missing.Swap(true) {
				log.Error("NATS stream missing", "stream", name, "err", err)
				counter.Add(ctx, 1, attrs)
			}
			return err
		}
		if err == nil {
			missing.Store(false)
		}
		return err
	}
}

// auditStream is the node's audit stream: the region's with --region.
func (n *node) auditStream() audit.StreamConfig {
	cfg := n.cfg
	stream := audit.StreamConfig{
		Name:     cfg.AuditStream,
		Replicas: cfg.AuditReplicas,
		MaxAge:   cfg.AuditMaxAge,
		MaxBytes: cfg.AuditMaxBytes,
		NoCreate: cfg.locked(),
	}
	if cfg.Region != "" {
		// A region's events go to its own stream, placed in its cluster;
		// `tpaudit gather` sources every region's stream into the global
		// one (docs/MULTI-REGION.md).
		stream.Name = audit.RegionStream(cfg.AuditStream, cfg.Region)
		stream.Region = cfg.Region
		if cfg.NATSURL != "" {
			stream.Cluster = cfg.Region
		}
	}
	return stream
}

func (n *node) auditConfig(nodeID string, signKey ed25519.PrivateKey) nodeaudit.Config {
	cfg := n.cfg
	dir := cfg.AuditSpoolDir
	if dir == "" {
		dir = filepath.Join(cfg.DataDir, "audit")
	}
	stream := n.auditStream()
	log := n.log.With("component", "audit")
	if signKey == nil {
		log.Warn("no --audit-key: audit events go unsigned and tpaudit verify reports every one of them")
	}
	return nodeaudit.Config{
		Spool: audit.SpoolConfig{
			Dir:           dir,
			NodeID:        nodeID,
			Region:        cfg.Region,
			MaxBytes:      cfg.AuditSpoolMaxBytes,
			SyncInterval:  cfg.AuditSyncInterval,
			Logger:        log,
			MeterProvider: n.tel.Meter,
		},
		Stream:             stream,
		Window:             cfg.AuditWindow,
		SignKey:            signKey,
		CheckpointInterval: cfg.AuditCheckpointInterval,
		Conn:               n.nc,
		Logger:             log,
	}
}

// readAuditKey reads the node's audit key (docs/AUDIT.md); none without
// --audit-key.
func readAuditKey(path string) (ed25519.PrivateKey, error) {
	if path == "" {
		return nil, nil
	}
	k, err := keyfile.ReadPrivate(path) // refuses a key others may read
	if err != nil {
		return nil, fmt.Errorf("--audit-key: %w", err) // the error names the file
	}
	return ed25519.NewKeyFromSeed(k.Seed()), nil
}

// listedAssertionKeys is the assertion_keys of the trust material in force,
// nil when it lists none (or before a pair is loaded).
func (n *node) listedAssertionKeys() []*bundle.AssertionKey {
	if n.bundles == nil {
		return nil
	}
	s := n.bundles.Snapshot()
	if s == nil || s.Trust == nil {
		return nil
	}
	return s.Trust.AssertionKeys
}

// onTrustApplied is told that a trust material was applied: with
// --assertion-key-dir the node re-reads its keys, so that a key the
// operator dropped into the directory is held once the trust material
// lists it next, before it signs (docs/BACKEND-JWT.md). It never blocks
// the bundle watcher.
func (n *node) onTrustApplied() {
	if n.keys != nil {
		n.keys.Request("trust_material_applied")
	}
}

// watchReload re-reads what SIGHUP re-reads until ctx is done: the
// --assertion-key-dir keys. Every other file the node reads is re-read on
// its own (bundles, NATS credentials) or is fixed for its life.
func (n *node) watchReload(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.reload:
			if n.keys == nil {
				n.log.Info("SIGHUP: nothing to re-read (no --assertion-key-dir)")
				continue
			}
			n.log.Info("SIGHUP: re-reading the assertion key directory")
			n.keys.Request("sighup")
		}
	}
}

// newEgressClient builds the OAuth egress client from --egress-secret and
// --egress-key (docs/OAUTH-EGRESS.md); nil in check mode, which does not
// bridge.
func newEgressClient(cfg *Config, mp metric.MeterProvider) (*egress.Client, error) {
	if cfg.upstreamURL == nil {
		return nil, nil
	}
	creds, err := cfg.readEgressCredentials()
	if err != nil {
		return nil, err // each problem names its flag
	}
	return egress.New(egress.Config{Credentials: creds, Timeout: cfg.EgressTimeout, MeterProvider: mp})
}

// egressCheck is bundle.Options.EgressCheck: in proxy mode a policy naming
// a provider this node holds no credential for is refused (rollback,
// bundle_rejected) before a request meets it. Check mode refuses egress
// routes per request instead, since a fleet shares one policy.
func (n *node) egressCheck() func(*bundle.EgressProvider) error {
	if n.egress == nil {
		return nil
	}
	return n.egress.Check
}

// egressTokens is proxy.Config.Egress, nil when there is no client.
func (n *node) egressTokens() proxy.EgressTokens {
	if n.egress == nil {
		return nil
	}
	return n.egress
}

// assertions is proxy.Config.Assertions: a nil *Minter must stay a nil
// interface, or the proxy would call through it.
func (n *node) assertions() proxy.AssertionMinter {
	if n.minter == nil {
		return nil
	}
	return n.minter
}

// buildServer builds the pipeline, the HTTP handler and the server.
func (n *node) buildServer(led core.Ledger) error {
	cfg := n.cfg
	pipeline, err := core.New(core.Config{
		Ledger:              led,
		Snapshot:            n.bundles.Snapshot,
		ClockSkew:           cfg.ClockSkew,
		MaxPassportLifetime: cfg.MaxPassportLifetime,
		RealtimeWindow:      cfg.RealtimeWindow,
		IgnoreHeaders:       cfg.IgnoreHeaders,
		MaxHeaderCandidates: cfg.MaxHeaderCandidates,
		RouteID:             cfg.RouteID,
		AudienceOverride:    cfg.AudienceOverride,
		Region:              cfg.Region,
		AuditRoom:           n.aud.Room, // SPEC §6 step 18a
	})
	if err != nil {
		return err
	}
	log := n.log.With("component", "http")
	handler, err := proxy.New(proxy.Config{
		Decider:             pipeline,
		Upstream:            cfg.upstreamURL,
		MaxBodyBytes:        cfg.MaxBodyBytes,
		MaxBodyMemoryBytes:  cfg.MaxBodyMemoryBytes,
		TrustedProxies:      cfg.trustedProxies,
		ExternalScheme:      cfg.ExternalScheme,
		ForwardProofHeaders: cfg.ForwardProofHeaders,
		Record:              n.aud.Record, // SPEC §9: before the response
		Assertions:          n.assertions(),
		Egress:              n.egressTokens(),
		Ready:               n.ready.Check,
		Metrics:             n.tel.Metrics,
		TracerProvider:      n.tel.Tracer,
		MeterProvider:       n.tel.Meter,
		Logger:              log,
	})
	if err != nil {
		return err
	}
	if cfg.GRPCListen != "" {
		if err := n.buildGRPC(handler, log.With("component", "grpc")); err != nil {
			return err
		}
	}
	n.srv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return nil
}

// buildGRPC builds the Envoy ext_authz gRPC server (docs/ENVOY.md): the
// same handler decides, so trust, pre-checks, audit and telemetry are check
// mode's. No goroutine runs until Run serves it.
func (n *node) buildGRPC(handler *proxy.Handler, log *slog.Logger) error {
	cfg := n.cfg
	authz, err := extauthz.New(extauthz.Config{Gateway: handler, Logger: log})
	if err != nil {
		return err
	}
	// A CheckRequest holds the body and the headers: room for a body of
	// --max-body-bytes and the headers around it. A larger one is refused
	// by gRPC (RESOURCE_EXHAUSTED), which Envoy answers with its
	// status_on_error; Envoy's max_request_bytes keeps bodies below it.
	maxMsg := cfg.MaxBodyBytes + int64(cfg.MaxHeaderBytes)*2 + 64<<10
	n.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(int(min(maxMsg, 1<<30))),
		// Bounded like everything else: Envoy multiplexes its checks on
		// few connections, and each stream may hold a body.
		grpc.MaxConcurrentStreams(1024),
		grpc.ConnectionTimeout(cfg.ReadHeaderTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: cfg.IdleTimeout}),
	)
	authz.Register(n.grpc)
	n.authz = authz
	return nil
}

// listen opens the verifying listener and, with --pprof-listen, the
// profiling one.
func (n *node) listen(ctx context.Context) error {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", n.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", n.cfg.Listen, err)
	}
	n.ln = ln
	n.onAbort(func() { ln.Close() })
	if n.upstream != nil {
		// The verifier's address is known now: the demo upstream verifies
		// assertions with its JWKS (docs/BACKEND-JWT.md).
		jwks := "http://" + dialable(ln.Addr()) + "/_tp/jwks.json"
		if err := n.upstream.VerifyAssertions(jwks, demo.AssertionIssuer, demo.BackendAudience); err != nil {
			return err
		}
	}
	if n.grpc != nil {
		gln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", n.cfg.GRPCListen)
		if err != nil {
			return fmt.Errorf("listen --grpc-listen %s: %w", n.cfg.GRPCListen, err)
		}
		n.grpcLn = gln
		n.onAbort(func() { gln.Close() })
	}
	if n.cfg.PprofListen != "" {
		// Profiles on their own listener (loopback by default), never on
		// the verifying one: an operator's tool, not a caller's.
		pln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", n.cfg.PprofListen)
		if err != nil {
			return fmt.Errorf("listen --pprof-listen %s: %w", n.cfg.PprofListen, err)
		}
		n.pprof = pln
		n.onAbort(func() { pln.Close() })
	}
	return nil
}

// Run serves until ctx is done or a server fails, then shuts down in the
// order STYLE §6 fixes. It returns after every goroutine it started has
// exited and everything newNode started is stopped.
func (n *node) Run(ctx context.Context) error {
	n.undo = nil // from here on, shutdown stops everything
	g, gctx := errgroup.WithContext(ctx)
	n.aud.Start(gctx)

	// The bundle watcher (and the deferred ledger's opener) outlive gctx: they
	// stop after the HTTP drain, not with it.
	bctx, stopBundles := context.WithCancel(context.WithoutCancel(gctx))
	defer stopBundles()
	var bundles sync.WaitGroup
	if n.deferred != nil {
		// An error means bctx ended first; openLedger logged every attempt.
		bundles.Go(func() { _ = n.deferred.Run(bctx) })
	}
	bundles.Go(func() { _ = n.bundles.Run(bctx) })
	bundles.Go(func() { _ = n.health.Run(bctx) })
	if n.keys != nil {
		// Stops with the bundle watcher, which asks it for re-reads.
		bundles.Go(func() { _ = n.keys.Run(bctx) })
	}
	if n.reload != nil {
		g.Go(func() error { return n.watchReload(gctx) })
	}

	g.Go(func() error { return serve("http server", n.srv, n.ln) })
	if n.grpc != nil {
		n.log.Info("envoy ext_authz gRPC listening", "addr", n.grpcLn.Addr().String())
		g.Go(func() error {
			// nil after Stop or GracefulStop (shutdown).
			if err := n.grpc.Serve(n.grpcLn); err != nil {
				return fmt.Errorf("grpc server: %w", err)
			}
			return nil
		})
	}
	if n.pprof != nil {
		psrv := &http.Server{Handler: pprofMux(), ReadHeaderTimeout: 10 * time.Second}
		n.log.Info("pprof listening", "addr", n.pprof.Addr().String())
		g.Go(func() error { return serve("pprof server", psrv, n.pprof) })
		g.Go(func() error {
			<-gctx.Done()
			return psrv.Close()
		})
	}
	if n.demo != nil {
		natsAuth := filepath.Join(n.cfg.DataDir, "nats-auth")
		g.Go(func() error {
			return runDemo(gctx, dialable(n.ln.Addr()), n.nc.ConnectedUrlRedacted(), natsAuth, n.demo, n.out)
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		n.shutdown(context.WithoutCancel(gctx), func() {
			stopBundles()
			bundles.Wait()
		})
		return nil
	})
	return g.Wait()
}

func serve(name string, srv *http.Server, ln net.Listener) error {
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// shutdown stops the node in STYLE §6 order: readiness false (and, with
// --shutdown-delay, serving on while load balancers notice), drain HTTP,
// stop the bundle watcher, flush audit to NATS (else leave it in the spool,
// with fsync) and stop the publisher, drain NATS, stop the embedded server.
// Each step ends with a log record whose shutdown_step names it, so an
// operator (and the e2e test) can follow the order from the log.
func (n *node) shutdown(ctx context.Context, stopBundles func()) {
	n.ready.Stop()
	if n.authz != nil {
		// gRPC health NOT_SERVING with readyz 503, so Envoy's health
		// checks take the node out during --shutdown-delay too.
		n.authz.Shutdown()
	}
	n.step("readiness_off", "shutdown_delay", n.cfg.ShutdownDelay)
	if d := n.cfg.ShutdownDelay; d > 0 {
		// ctx is never cancelled here (WithoutCancel): the delay always runs.
		retry.Sleep(ctx, d)
	}
	sctx, cancel := context.WithTimeout(ctx, n.cfg.ShutdownTimeout)
	defer cancel()
	drained := true
	if err := n.srv.Shutdown(sctx); err != nil {
		n.log.Warn("http drain deadline passed", "err", err)
		drained = false
	}
	if n.grpc != nil && !n.stopGRPC(sctx) {
		n.log.Warn("grpc drain deadline passed")
		drained = false
	}
	n.step("http_drained", "complete", drained)
	if n.upstream != nil {
		n.upstream.Close()
	}
	stopBundles()
	n.step("bundles_stopped")
	n.aud.Shutdown(sctx, n.cfg.AuditFlushTimeout)
	n.step("audit_flushed", "audit_pending", n.aud.Pending())
	if err := natsx.DrainAndWait(sctx, n.nc); err != nil {
		n.log.Warn("nats drain", "err", err)
	}
	n.step("nats_drained")
	if n.embedded != nil {
		n.stopEmbedded()
		n.step("nats_server_stopped")
	}
	n.stopTelemetry(sctx)
	n.log.Info("verifierd stopped", "shutdown_step", "stopped")
}

// stopGRPC drains the gRPC server: in-flight checks finish, until ctx
// ends; then the rest are cut. It reports whether the drain completed, and
// returns after the drain goroutine it starts has exited.
func (n *node) stopGRPC(ctx context.Context) bool {
	done := make(chan struct{})
	go func() {
		n.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		n.grpc.Stop() // makes GracefulStop return
		<-done
		return false
	}
}

// step logs the end of one shutdown step.
func (n *node) step(name string, attrs ...any) {
	n.log.Info("shutdown step", append([]any{"shutdown_step", name}, attrs...)...)
}

func (n *node) stopEmbedded() {
	if n.embedded == nil {
		return
	}
	// Called on the way out, after the run context ended.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.embedded.Shutdown(ctx); err != nil {
		n.log.Warn("embedded NATS server shutdown", "err", err)
	}
}

func (n *node) stopTelemetry(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := n.tel.Shutdown(ctx); err != nil {
		n.log.Warn("telemetry shutdown", "err", err)
	}
}

// pprofMux serves net/http/pprof on a mux of its own: importing the
// package registers nothing here, since verifierd never serves
// http.DefaultServeMux.
func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

func mode(cfg *Config) string {
	if cfg.Upstream != "" {
		return "proxy+check"
	}
	return "check"
}

// sanitize makes a node id usable as a NATS server name.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}
