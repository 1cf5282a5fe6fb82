package natstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestServer(t *testing.T) {
	s := natstest.Server(t)
	js := natstest.JetStream(t, natstest.Connect(t, s.ClientURL()))
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "B"})
	if err != nil {
		t.Fatalf("CreateKeyValue: %v", err)
	}
	if _, err := kv.Create(t.Context(), "k", []byte("v")); err != nil {
		t.Fatalf("Create: %v", err)
	}
}

func TestCluster(t *testing.T) {
	servers := natstest.Cluster(t, 3)
	if len(servers) != 3 {
		t.Fatalf("Cluster(t, 3) returned %d servers", len(servers))
	}
	leaders := 0
	for _, s := range servers {
		if s.JetStreamIsLeader() {
			leaders++
		}
		if got := s.NumRoutes(); got < 2 {
			t.Errorf("server %s has %d routes, want at least 2", s.Name(), got)
		}
	}
	if leaders != 1 {
		t.Errorf("%d meta leaders, want 1", leaders)
	}
	js := natstest.JetStream(t, natstest.Connect(t, natstest.URLs(servers)...))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "R3", Replicas: 3}); err != nil {
		t.Fatalf("create an R3 bucket right after Cluster returned: %v", err)
	}
}

// TestRestartServer stops a server and starts it again on the same port and
// store: the client reconnects by itself and the data is still there.
func TestRestartServer(t *testing.T) {
	s := natstest.Server(t)
	url := s.ClientURL()
	nc := natstest.Connect(t, url)
	js := natstest.JetStream(t, nc)
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "B"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "k", []byte("before")); err != nil {
		t.Fatal(err)
	}

	st := natstest.StopServer(t, s)
	if s.Running() {
		t.Fatal("server still running after StopServer")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	_, err = kv.Get(ctx, "k")
	cancel()
	if err == nil {
		t.Fatal("Get with the server stopped = nil error")
	}

	s2 := natstest.RestartServer(t, st)
	if s2.ClientURL() != url {
		t.Errorf("restarted on %s, want %s", s2.ClientURL(), url)
	}
	took := testwait.Until(t, 15*time.Second, "Get after restart", func() error {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		e, err := kv.Get(ctx, "k")
		if err == nil && string(e.Value()) != "before" {
			t.Errorf("after restart k = %q, want %q", e.Value(), "before")
		}
		return err
	})
	t.Logf("client working again %v after the restart", took)
}

// TestRestartClusterMember restarts one member of an R3 cluster; it rejoins
// with its routes and the cluster answers again.
func TestRestartClusterMember(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a cluster member; slow")
	}
	servers := natstest.Cluster(t, 3)
	st := natstest.StopServer(t, servers[0])
	servers[0] = natstest.RestartServer(t, st)
	natstest.WaitForMetaLeader(t, servers)
	for _, s := range servers {
		if got := s.NumRoutes(); got < 2 {
			t.Errorf("server %s has %d routes after the restart, want at least 2", s.Name(), got)
		}
	}
}

func TestExternal(t *testing.T) {
	bin := natstest.BuildServerBinary(t)
	if again := natstest.BuildServerBinary(t); again != bin {
		t.Errorf("second BuildServerBinary = %q, want the cached %q", again, bin)
	}
	e := natstest.StartExternal(t)
	nc := natstest.Connect(t, e.ClientURL())
	if v := nc.ConnectedServerVersion(); v == "" || v[0] < '2' {
		t.Errorf("external server version %q", v)
	}
	js := natstest.JetStream(t, nc)
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "B", LimitMarkerTTL: time.Second})
	if err != nil {
		t.Fatalf("create a bucket with per-key TTLs on the external server: %v", err)
	}
	if _, err := kv.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}

	e.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	_, err = kv.Get(ctx, "k")
	cancel()
	if err == nil {
		t.Fatal("Get with the external server stopped = nil error")
	}
	e.Start()
	testwait.Until(t, 15*time.Second, "Get after the external server restarted", func() error {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err := kv.Get(ctx, "k")
		return err
	})
}
