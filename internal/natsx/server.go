package natsx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultListen is the embedded server's client listener when
// ServerConfig.Listen is empty: loopback unless the operator says otherwise
// (SPEC §10.1).
const DefaultListen = "127.0.0.1:4222"

const (
	// defaultStartTimeout bounds StartServer when ctx has no deadline. A
	// JetStream store recovering a large ledger can take a few seconds.
	defaultStartTimeout = 30 * time.Second
	// readyPoll is how often StartServer looks at a starting server.
	readyPoll = 50 * time.Millisecond
)

// ServerConfig configures an embedded nats-server with JetStream.
type ServerConfig struct {
	// DataDir is the JetStream store directory. Required.
	DataDir string
	// Listen is the client listener, host:port. If empty, DefaultListen.
	// A port of 0 or -1 lets the operating system choose one; ClientURL
	// reports it.
	Listen string
	// ServerName names the server. If empty, nats-server uses its generated
	// ID. Required, and unique, when Cluster is set: JetStream's clustering
	// layer tells peers apart by name.
	ServerName string
	// Cluster, if not nil, makes the server a member of a cluster.
	Cluster *ClusterConfig
	// SyncInterval is how often JetStream flushes its files to disk. If
	// zero, nats-server's default (2 minutes). JetStream acknowledges a write
	// before it is on disk (SPEC §7, durability).
	SyncInterval time.Duration
	// SyncAlways makes JetStream fsync every write before acknowledging it,
	// so an OS crash or power loss loses no acknowledged write; verifierd
	// sets it unless --ledger-sync default. Cost: at R3 with 64
	// writes in flight, about 34 µs more CPU per write and a p50 of 6.1 ms
	// instead of 2.3 ms on a loaded test machine (docs/PERFORMANCE.md).
	SyncAlways bool
	// Logger receives nats-server's log. If nil, it is discarded.
	Logger *slog.Logger
	// ConfigFiles are nats-server configuration files read first, in
	// order, such as natsauth's auth.conf (operator, accounts: every client
	// must then present a credential) and tls.conf. The fields above win
	// over what they set. If empty, the server accepts any client, which
	// only tests should want.
	ConfigFiles []string
}

// ClusterConfig joins an embedded server to a cluster.
type ClusterConfig struct {
	// Name is the cluster name, the same on every member. Required.
	Name string
	// Listen is the route listener, host:port. Required; a port of 0 or -1
	// lets the operating system choose one.
	Listen string
	// Routes are the other members' route URLs, nats-route://host:port or
	// host:port. A member's own address may be listed: nats-server ignores
	// a route to itself, so every member can share one list.
	Routes []string
}

// Server is a running embedded nats-server. Its methods are safe for
// concurrent use.
type Server struct {
	ns  *server.Server
	log *slog.Logger
}

// StartServer starts an embedded nats-server with JetStream and returns once
// it accepts client connections. It waits at most until ctx's deadline (30s
// if ctx has none); on failure it stops what it started and returns an error
// saying which part failed (configuration, listener, JetStream store).
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	opts, err := cfg.options()
	if err != nil {
		return nil, fmt.Errorf("natsx: start server: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsx: start server: %w", err)
	}
	sl := &serverLogger{log: log}
	ns.SetLoggerV2(sl, false, false, false)
	ns.Start() // does not block; listeners come up in the background

	ctx, cancel := context.WithTimeout(ctx, defaultStartTimeout)
	defer cancel()
	if err := waitReady(ctx, ns, sl); err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("natsx: start server on %s: %w", hostPort(opts.Host, opts.Port), err)
	}
	log.Info("nats server started", "client_url", ns.ClientURL(), "server_name", ns.Name(), "store_dir", ns.StoreDir())
	return &Server{ns: ns, log: log}, nil
}

// waitReady polls ns until it accepts connections with JetStream on, it
// reports a fatal error, or ctx ends.
func waitReady(ctx context.Context, ns *server.Server, sl *serverLogger) error {
	for {
		if msg := sl.fatalMessage(); msg != "" {
			return errors.New(msg)
		}
		if ns.ReadyForConnections(readyPoll) {
			if !ns.JetStreamEnabled() {
				return errors.New("jetstream not enabled")
			}
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("not ready for connections: %w", context.Cause(ctx))
		}
	}
}

// ClientURL returns the URL clients connect to, with the port actually
// chosen when the configuration let the operating system pick it.
func (s *Server) ClientURL() string {
	return s.ns.ClientURL()
}

// Shutdown stops the server and waits until it has stopped, at most until
// ctx ends. If ctx ends first, Shutdown returns ctx's error and the server
// finishes stopping in the background.
func (s *Server) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	}()
	select {
	case <-done:
		s.log.Info("nats server stopped")
		return nil
	case <-ctx.Done():
		return fmt.Errorf("natsx: shut down server: %w", context.Cause(ctx))
	}
}

// options turns cfg into nats-server options, checking every field.
func (cfg ServerConfig) options() (*server.Options, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("data dir is required")
	}
	listen := cfg.Listen
	if listen == "" {
		listen = DefaultListen
	}
	host, port, err := splitListen(listen)
	if err != nil {
		return nil, fmt.Errorf("client listen address: %w", err)
	}
	opts := &server.Options{}
	if len(cfg.ConfigFiles) > 0 {
		if opts, err = ReadConfigFiles(cfg.ConfigFiles...); err != nil {
			return nil, err
		}
	}
	opts.ServerName = cfg.ServerName
	opts.Host, opts.Port = host, port
	opts.JetStream = true
	opts.StoreDir = cfg.DataDir
	opts.SyncInterval, opts.SyncAlways = cfg.SyncInterval, cfg.SyncAlways
	// The process owns its signals: main cancels a context, and shutdown
	// runs in the order of STYLE §6.
	opts.NoSigs = true
	if c := cfg.Cluster; c != nil {
		if c.Name == "" {
			return nil, errors.New("cluster name is required")
		}
		if cfg.ServerName == "" {
			return nil, errors.New("server name is required in a cluster")
		}
		if c.Listen == "" {
			return nil, errors.New("cluster listen address is required")
		}
		host, port, err := splitListen(c.Listen)
		if err != nil {
			return nil, fmt.Errorf("cluster listen address: %w", err)
		}
		opts.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: port}
		for _, r := range c.Routes {
			u, err := parseRoute(r)
			if err != nil {
				return nil, err
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	return opts, nil
}

// ReadConfigFiles reads nats-server configuration files into one set of
// options with nats-server's own reader. nats-server reads one file (its
// includes are relative to it), so the files are joined, in order, into a
// temporary one: paths inside them must be absolute, as natsauth writes them.
func ReadConfigFiles(files ...string) (*server.Options, error) {
	var b bytes.Buffer
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("config file: %w", err)
		}
		b.Write(data)
		b.WriteByte('\n')
	}
	dir, err := os.MkdirTemp("", "natsx-conf-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	joined := filepath.Join(dir, "server.conf")
	if err := os.WriteFile(joined, b.Bytes(), 0o600); err != nil {
		return nil, err
	}
	opts, err := server.ProcessConfigFile(joined)
	if err != nil {
		return nil, fmt.Errorf("config files %s: %w", strings.Join(files, ", "), err)
	}
	opts.ConfigFile = "" // the temporary file is gone: nothing to reload
	return opts, nil
}

// splitListen parses host:port. A port of 0 or -1 asks the operating system
// for one; nats-server spells that -1, because it reads 0 as "the default".
func splitListen(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("%q: invalid port", hp)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

func parseRoute(r string) (*url.URL, error) {
	s := r
	if !strings.Contains(s, "://") {
		s = "nats-route://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("cluster route %q: not a nats-route://host:port URL", r)
	}
	return u, nil
}

func hostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}
