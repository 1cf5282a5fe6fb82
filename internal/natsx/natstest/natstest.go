// Package natstest runs real NATS servers for tests: an embedded JetStream
// server, a JetStream cluster on loopback, and the external nats-server binary
// built from the go.mod version for end-to-end tests. There are no fakes.
//
// Every helper takes a testing.TB, fails the test (never skips it) when it
// cannot do its job, and cleans up with t.Cleanup. Client ports are chosen by
// the operating system; ports a server must be told in advance (routes,
// gateways, an external server's) come from testport. Nothing listens beyond
// 127.0.0.1.
package natstest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/testport"
)

const (
	// readyTimeout bounds a server's start and a cluster's meta-leader
	// election; both take well under a second on loopback.
	readyTimeout = 20 * time.Second
	// pollInterval is how often helpers look again while waiting.
	pollInterval = 20 * time.Millisecond
)

// Server starts an embedded JetStream server on 127.0.0.1 with an
// OS-chosen port and a store in t.TempDir(), waits until it accepts
// connections, and shuts it down (and waits) when the test ends.
func Server(t testing.TB) *server.Server {
	t.Helper()
	return ServerWith(t, nil)
}

// ServerWith is Server with its options passed through mod before it
// starts (mod may be nil).
func ServerWith(t testing.TB, mod func(*server.Options)) *server.Server {
	t.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
	if mod != nil {
		mod(opts)
	}
	return run(t, opts)
}

// ServerWithConfig is Server with nats-server configuration files read
// first (natsauth's auth.conf and tls.conf: operator mode, every client
// needs a credential, TLS). The test's listener, store and JetStream win
// over what the files set.
func ServerWithConfig(t testing.TB, files ...string) *server.Server {
	t.Helper()
	opts, err := natsx.ReadConfigFiles(files...)
	if err != nil {
		t.Fatalf("natstest.ServerWithConfig: %v", err)
	}
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.JetStream, opts.StoreDir = true, t.TempDir()
	opts.NoLog, opts.NoSigs = true, true
	return run(t, opts)
}

// Cluster starts n embedded JetStream servers clustered on loopback with
// OS-chosen ports, and returns once every server sees the JetStream meta
// leader and that leader answers a client. Each server is shut down when the
// test ends.
func Cluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	return ClusterWith(t, n, nil)
}

// ClusterWith is Cluster with each server's options passed through mod
// before it starts (mod may be nil), for tests and benchmarks of a server
// setting, such as SyncAlways.
func ClusterWith(t testing.TB, n int, mod func(*server.Options)) []*server.Server {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest.Cluster(%d): need at least one server", n)
	}
	// Every member routes to every cluster port, its own included (a route
	// to itself is dropped), so the meta group knows its size from the
	// start. nats-server cannot report a port before it listens, so the
	// ports are reserved by listening (outside the ephemeral range, see
	// testport) and released just before use.
	ports := testport.Free(t, n)
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	name := "C-" + strings.ReplaceAll(t.Name(), "/", "_")
	servers := make([]*server.Server, n)
	for i := range n {
		opts := &server.Options{
			ServerName: fmt.Sprintf("S-%d", i+1),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster: server.ClusterOpts{
				Name: name,
				Host: "127.0.0.1",
				Port: ports[i],
			},
			Routes: routes,
		}
		if mod != nil {
			mod(opts)
		}
		servers[i] = run(t, opts)
	}
	WaitForMetaLeader(t, servers)
	return servers
}

// WaitForMetaLeader waits until one of servers is the JetStream meta leader,
// every running one is current with it, and a client gets an answer from
// the JetStream API. It fails the test after 20s.
func WaitForMetaLeader(t testing.TB, servers []*server.Server) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		if last = metaReady(t.Context(), servers); last == nil {
			return
		}
		time.Sleep(pollInterval)
	}
	t.Fatalf("natstest: JetStream cluster not ready after %s: %v", readyTimeout, last)
}

func metaReady(ctx context.Context, servers []*server.Server) error {
	var leader *server.Server
	running := 0
	for _, s := range servers {
		if !s.Running() {
			continue
		}
		running++
		if s.JetStreamIsLeader() {
			leader = s
		}
		if !s.JetStreamIsCurrent() {
			return fmt.Errorf("server %s not current", s.Name())
		}
	}
	if leader == nil {
		return fmt.Errorf("no meta leader")
	}
	// Placement counts only the peers whose JetStream stats the leader
	// has received: before that an R3 stream right after start is refused
	// "no suitable peers for placement" (a CI run saw it).
	if peers := leader.JetStreamClusterPeers(); len(peers) < running {
		return fmt.Errorf("meta leader %s places on %d of %d servers (%v)", leader.Name(), len(peers), running, peers)
	}
	nc, err := nats.Connect(leader.ClientURL(), nats.Timeout(time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// Connect connects to urls (a server's ClientURL, or several) with
// natsx.Connect, the options production uses, and closes the connection when
// the test ends.
func Connect(t testing.TB, urls ...string) *nats.Conn {
	t.Helper()
	nc, err := natsx.Connect(t.Context(), strings.Join(urls, ","), "natstest-"+t.Name(), nil)
	if err != nil {
		t.Fatalf("natstest.Connect(%v): %v", urls, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream handle on nc.
func JetStream(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest.JetStream: %v", err)
	}
	return js
}

// URLs returns the client URLs of servers, for Connect.
func URLs(servers []*server.Server) []string {
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.ClientURL()
	}
	return urls
}

// Stopped is a server stopped by StopServer: what RestartServer needs to
// start it again on the same ports with the same store.
type Stopped struct {
	opts *server.Options
}

// StopServer shuts s down and waits until it has stopped, keeping what is
// needed to restart it: its name, client and cluster ports, routes and
// JetStream store directory.
func StopServer(t testing.TB, s *server.Server) *Stopped {
	t.Helper()
	addr, ok := s.Addr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("natstest.StopServer: server %s has no client listener", s.Name())
	}
	opts := &server.Options{
		ServerName: s.Name(),
		Host:       addr.IP.String(),
		Port:       addr.Port,
		JetStream:  true,
		StoreDir:   s.StoreDir(),
		NoLog:      true,
		NoSigs:     true,
	}
	if ca := s.ClusterAddr(); ca != nil {
		vz, err := s.Varz(nil)
		if err != nil {
			t.Fatalf("natstest.StopServer: varz of %s: %v", s.Name(), err)
		}
		opts.Cluster = server.ClusterOpts{Name: s.ClusterName(), Host: ca.IP.String(), Port: ca.Port}
		for _, r := range vz.Cluster.URLs {
			u, err := url.Parse("nats-route://" + r)
			if err != nil {
				t.Fatalf("natstest.StopServer: route %q of %s: %v", r, s.Name(), err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	s.Shutdown()
	s.WaitForShutdown()
	return &Stopped{opts: opts}
}

// RestartServer starts a stopped server again on the same ports and store
// directory, waits until it accepts connections, and shuts it down when the
// test ends. In a cluster, follow it with WaitForMetaLeader.
func RestartServer(t testing.TB, st *Stopped) *server.Server {
	t.Helper()
	return run(t, st.opts.Clone())
}

// run starts a server from opts, waits for it and registers its shutdown.
func run(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("natstest: new server: %v", err)
	}
	s.Start()
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(readyTimeout) {
		t.Fatalf("natstest: server %s not ready for connections after %s", s.Name(), readyTimeout)
	}
	return s
}
