// Command verifierd is a tpcluster verifier node: it verifies proof-bound
// HTTP requests (SPEC §6), consumes each passport's jti once in the shared
// replay ledger on NATS JetStream (SPEC §7), and forwards allowed requests
// upstream (proxy mode) or answers a gateway (check mode, /_tp/check).
//
// With no --nats-url it starts an embedded NATS server with JetStream, so one
// binary is a complete verifier. --demo prepares demo keys, bundles and an
// upstream and shows a signed request allowed and its replay denied.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/demo"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/proxy"
	"github.com/tpcluster/tpcluster/internal/retry"
	"github.com/tpcluster/tpcluster/internal/telemetry"
)

func main() {
	cfg, err := parseConfig(os.Args[1:], os.LookupEnv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "verifierd: %v\n", err)
		os.Exit(2)
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "verifierd: invalid configuration:\n%v\n", err)
		os.Exit(2)
	}
	level, _ := parseLevel(cfg.LogLevel)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log, os.Stdout); err != nil {
		log.Error("verifierd stopped", "err", err)
		os.Exit(1)
	}
}

// run builds every component, serves until ctx is done, then shuts down in
// the order STYLE §6 fixes.
func run(ctx context.Context, cfg *Config, log *slog.Logger, out io.Writer) error {
	var demoFiles *demo.Files
	if cfg.Demo {
		d, err := demo.Prepare(filepath.Join(cfg.DataDir, "demo"))
		if err != nil {
			return err
		}
		up, err := demo.StartUpstream(ctx, "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer up.Close()
		cfg.Upstream, cfg.TrustMaterial, cfg.PolicyBundle = up.URL, d.TrustMaterial, d.PolicyBundle
		cfg.BundlePublicKeys = append(cfg.BundlePublicKeys[:0], d.BundlePublicKey)
		demoFiles = d
		if err := cfg.Validate(); err != nil {
			return err
		}
	}
	if cfg.DevAllowUnsigned {
		log.Warn("DEVELOPMENT MODE: --dev-allow-unsigned-bundles loads unsigned trust material and policy; never use it in production")
	}
	log.Info("verifierd starting", cfg.logValues()...)
	nodeID := cfg.nodeID()

	// NATS: embedded, or join a cluster.
	var embedded *natsx.Server
	natsURL := cfg.NATSURL
	if natsURL == "" {
		s, err := natsx.StartServer(ctx, natsx.ServerConfig{
			DataDir:    filepath.Join(cfg.DataDir, "nats"),
			Listen:     cfg.NATSListen,
			ServerName: "verifierd-" + sanitize(nodeID),
			SyncAlways: cfg.LedgerSync == "always",
			Logger:     log.With("component", "nats-server"),
		})
		if err != nil {
			return err
		}
		embedded = s
		natsURL = s.ClientURL()
		log.Info("embedded NATS server started", "url", natsURL)
	}
	nc, err := natsx.Connect(ctx, natsURL, "verifierd "+nodeID, log.With("component", "nats"))
	if err != nil {
		shutdownServer(embedded, log)
		return err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		shutdownServer(embedded, log)
		return fmt.Errorf("jetstream: %w", err)
	}

	tel, err := telemetry.New(ctx, telemetry.Config{ServiceName: "verifierd", NodeID: nodeID})
	if err != nil {
		return err
	}

	// Audit before bundles: the first bundle_applied events go to the spool.
	aud, err := openAuditor(cfg, nc, js, nodeID, log, tel)
	if err != nil {
		nc.Close()
		shutdownServer(embedded, log)
		return err
	}
	defer aud.spool.Close() // fsync on an early return; a no-op after shutdown

	var (
		led  nodeLedger
		lazy *lazyLedger
	)
	if cfg.bundlesFromNATS() {
		// SPEC §8.2: a node decides from its cached pair before NATS
		// answers, so the ledger opens in the background.
		lazy = &lazyLedger{open: func(ctx context.Context) (nodeLedger, error) {
			return openLedger(ctx, js, cfg, nodeID, log, tel)
		}}
		led = lazy
	} else if led, err = openLedger(ctx, js, cfg, nodeID, log, tel); err != nil {
		nc.Close()
		shutdownServer(embedded, log)
		return err
	}

	keys, err := readBundleKeys(cfg.BundlePublicKeys)
	if err != nil {
		return err
	}
	bundles, err := newBundleSource(cfg, js, keys, nodeID, log, tel, aud)
	if err != nil {
		nc.Close()
		shutdownServer(embedded, log)
		return err
	}

	pipeline, err := core.New(core.Config{
		Ledger:              led,
		Snapshot:            bundles.Snapshot,
		ClockSkew:           cfg.ClockSkew,
		MaxPassportLifetime: cfg.MaxPassportLifetime,
		RealtimeWindow:      cfg.RealtimeWindow,
		IgnoreHeaders:       cfg.IgnoreHeaders,
		MaxHeaderCandidates: cfg.MaxHeaderCandidates,
		RouteID:             cfg.RouteID,
		AudienceOverride:    cfg.AudienceOverride,
		Region:              cfg.Region,
		AuditRoom:           aud.spool.Room, // SPEC §6 step 18a
	})
	if err != nil {
		return err
	}

	var stopping atomic.Bool
	handler, err := proxy.New(proxy.Config{
		Decider:             pipeline,
		Upstream:            cfg.upstreamURL,
		MaxBodyBytes:        cfg.MaxBodyBytes,
		TrustedProxies:      cfg.trustedProxies,
		ExternalScheme:      cfg.ExternalScheme,
		ForwardProofHeaders: cfg.ForwardProofHeaders,
		Record:              aud.record, // SPEC §9: before the response
		Ready: func(ctx context.Context, strict bool) (bool, any) {
			return readiness(ctx, &stopping, bundles.Snapshot(), led, cfg.RealtimeWindow, strict)
		},
		Metrics:        tel.Metrics,
		TracerProvider: tel.Tracer,
		MeterProvider:  tel.Meter,
		Logger:         log.With("component", "http"),
	})
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.With("component", "http").Handler(), slog.LevelWarn),
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		nc.Close()
		shutdownServer(embedded, log)
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	log.Info("verifierd listening", "addr", ln.Addr().String(), "node_id", nodeID, "mode", mode(cfg))
	var pln net.Listener
	if cfg.PprofListen != "" {
		// Profiles on their own listener (loopback by default), never on
		// the verifying one: an operator's tool, not a caller's.
		if pln, err = (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.PprofListen); err != nil {
			ln.Close()
			nc.Close()
			shutdownServer(embedded, log)
			return fmt.Errorf("listen --pprof-listen %s: %w", cfg.PprofListen, err)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	aud.start(gctx)
	bctx, stopBundles := context.WithCancel(context.WithoutCancel(gctx))
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	var bundlesDone = make(chan struct{})
	go func() {
		defer close(bundlesDone)
		var wg sync.WaitGroup
		if lazy != nil {
			wg.Go(func() { _ = lazy.Run(bctx) })
		}
		_ = bundles.Run(bctx)
		wg.Wait()
	}()
	if cfg.Demo {
		g.Go(func() error {
			return runDemo(gctx, dialable(ln.Addr()), demoFiles, out)
		})
	}
	if pln != nil {
		psrv := &http.Server{Handler: pprofMux(), ReadHeaderTimeout: 10 * time.Second}
		log.Info("pprof listening", "addr", pln.Addr().String())
		g.Go(func() error {
			if err := psrv.Serve(pln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("pprof server: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			return psrv.Close()
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		// STYLE §6 order: readiness false, drain HTTP, stop the bundle
		// watcher, flush audit to NATS (else leave it in the spool, with
		// fsync), drain NATS, stop the embedded server.
		stopping.Store(true)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), cfg.ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("http drain deadline passed", "err", err)
		}
		stopBundles()
		<-bundlesDone
		aud.shutdown(sctx, cfg.AuditFlushTimeout)
		if err := natsx.DrainAndWait(sctx, nc); err != nil {
			log.Warn("nats drain", "err", err)
		}
		shutdownServer(embedded, log)
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("telemetry shutdown", "err", err)
		}
		log.Info("verifierd stopped")
		return nil
	})
	return g.Wait()
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

// dialable turns a listener's address into one a client on this machine
// can dial: a wildcard host (":8081" listens on [::]) becomes 127.0.0.1.
func dialable(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func mode(cfg *Config) string {
	if cfg.Upstream != "" {
		return "proxy+check"
	}
	return "check"
}

// nodeLedger is the replay ledger a node decides with: core's contract plus
// the readiness check.
type nodeLedger interface {
	core.Ledger
	Ping(ctx context.Context) error
}

func openLedger(ctx context.Context, js jetstream.JetStream, cfg *Config, nodeID string, log *slog.Logger, tel *telemetry.Providers) (nodeLedger, error) {
	lc := ledger.Config{
		JetStream:     js,
		Bucket:        cfg.LedgerBucket,
		Replicas:      cfg.LedgerReplicas,
		MaxAge:        cfg.MaxPassportLifetime + 2*cfg.ClockSkew,
		Timeout:       cfg.LedgerTimeout,
		NodeID:        nodeID,
		Logger:        log.With("component", "ledger"),
		MeterProvider: tel.Meter,
	}
	base := lc
	if cfg.Region != "" {
		// One bucket per region, placed in the region's NATS cluster, which
		// a supercluster names after the region (docs/MULTI-REGION.md).
		lc.Bucket = ledger.BucketFor(cfg.LedgerBucket, cfg.Region)
		if cfg.NATSURL != "" {
			lc.Cluster = cfg.Region
		}
	}
	// Nodes may start before their NATS cluster has a JetStream leader:
	// retry with a bounded back-off until ctx ends.
	wait := 250 * time.Millisecond
	for {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		led, err := ledger.New(octx, lc)
		cancel()
		if err == nil && cfg.Region != "" {
			return ledger.NewRegional(led, base), nil
		}
		if err == nil {
			return led, nil
		}
		log.Warn("replay ledger not ready; retrying", "err", err, "retry_in", wait)
		if !retry.Sleep(ctx, wait) {
			return nil, fmt.Errorf("replay ledger: %w", err)
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func readBundleKeys(paths []string) ([]bundle.VerifyKey, error) {
	var keys []bundle.VerifyKey
	for _, p := range paths {
		k, err := keyfile.ReadPublic(p)
		if err != nil {
			return nil, fmt.Errorf("--bundle-public-key %s: %w", p, err)
		}
		keys = append(keys, bundle.NewVerifyKey(k))
	}
	return keys, nil
}

func runDemo(ctx context.Context, addr string, files *demo.Files, out io.Writer) error {
	base := "http://" + addr
	if err := demo.Exercise(ctx, base, files, out); err != nil {
		return err
	}
	fmt.Fprintf(out, `
verifierd is running (proxy mode, embedded NATS, demo bundle in %s). Try your own request:

    go run ./cmd/tpcurl --key %s --kid %s --route-id orders.get --url %s/v1/orders/ord_42
    go run ./cmd/tpcurl --key %s --kid %s --route-id orders.create -X POST -d '{"order_id":"ord_42"}' -H 'Content-Type: application/json' --repeat 2 --url %s/v1/orders
    curl -si %s/v1/orders/ord_42                  # no passport: 401 passport_missing
    curl -s %s/_tp/readyz ; curl -s %s/_tp/metrics | grep tpcluster_decisions

Ctrl-C stops it.
`, files.Dir, files.CallerKey, demo.CallerKID, base, files.CallerKey, demo.CallerKID, base, base, base, base)
	return nil
}

func shutdownServer(s *natsx.Server, log *slog.Logger) {
	if s == nil {
		return
	}
	// Called on the way out, after the run context ended.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		log.Warn("embedded NATS server shutdown", "err", err)
	}
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
