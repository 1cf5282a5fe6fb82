package natsx_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/testport"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

func startServer(t *testing.T, cfg natsx.ServerConfig) *natsx.Server {
	t.Helper()
	s, err := natsx.StartServer(t.Context(), cfg)
	if err != nil {
		t.Fatalf("StartServer: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s
}

func TestStartServer(t *testing.T) {
	s := startServer(t, natsx.ServerConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if !strings.HasPrefix(s.ClientURL(), "nats://127.0.0.1:") || strings.HasSuffix(s.ClientURL(), ":4222") {
		t.Errorf("ClientURL() = %q, want an OS-chosen loopback port", s.ClientURL())
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AccountInfo(t.Context()); err != nil {
		t.Errorf("JetStream account info: %v", err)
	}
}

func TestStartServerErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	tests := []struct {
		name    string
		cfg     natsx.ServerConfig
		wantErr string
	}{
		{"no data dir", natsx.ServerConfig{Listen: "127.0.0.1:0"}, "data dir is required"},
		{"bad listen", natsx.ServerConfig{DataDir: t.TempDir(), Listen: "127.0.0.1"}, "client listen address"},
		{"bad port", natsx.ServerConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:99999"}, "invalid port"},
		{"port in use", natsx.ServerConfig{DataDir: t.TempDir(), Listen: busy.Addr().String()}, "listening"},
		{"cluster without name", natsx.ServerConfig{DataDir: t.TempDir(), ServerName: "a",
			Cluster: &natsx.ClusterConfig{Listen: "127.0.0.1:0"}}, "cluster name is required"},
		{"cluster without server name", natsx.ServerConfig{DataDir: t.TempDir(),
			Cluster: &natsx.ClusterConfig{Name: "c", Listen: "127.0.0.1:0"}}, "server name is required"},
		{"cluster without listen", natsx.ServerConfig{DataDir: t.TempDir(), ServerName: "a",
			Cluster: &natsx.ClusterConfig{Name: "c"}}, "cluster listen address is required"},
		{"bad route", natsx.ServerConfig{DataDir: t.TempDir(), ServerName: "a",
			Cluster: &natsx.ClusterConfig{Name: "c", Listen: "127.0.0.1:0", Routes: []string{"nats-route://"}}}, "cluster route"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			s, err := natsx.StartServer(t.Context(), tt.cfg)
			if err == nil {
				s.Shutdown(t.Context())
				t.Fatalf("StartServer(%s) = nil error, want %q", tt.name, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("StartServer(%s) = %q, want it to contain %q", tt.name, err, tt.wantErr)
			}
			t.Logf("StartServer(%s) failed after %v: %v", tt.name, time.Since(start), err)
		})
	}
}

// TestStartServerCluster forms a three-node JetStream cluster from
// natsx.ServerConfig alone, each member routing to the same list.
func TestStartServerCluster(t *testing.T) {
	ports := testport.Free(t, 3)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("127.0.0.1:%d", p))
	}
	var urls []string
	for i := range 3 {
		s := startServer(t, natsx.ServerConfig{
			DataDir:    t.TempDir(),
			Listen:     "127.0.0.1:-1",
			ServerName: fmt.Sprintf("n%d", i),
			Cluster:    &natsx.ClusterConfig{Name: "tp", Listen: routes[i], Routes: routes},
		})
		urls = append(urls, s.ClientURL())
	}
	nc, err := nats.Connect(strings.Join(urls, ","))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// The meta leader is elected in the background: poll with a deadline.
	testwait.Until(t, 20*time.Second, "create an R3 bucket", func() error {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "R3", Replicas: 3})
		return err
	})
}
