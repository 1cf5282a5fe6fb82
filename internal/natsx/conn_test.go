package natsx_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testport"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

func TestConnect(t *testing.T) {
	s := natstest.Server(t)
	nc, err := natsx.Connect(t.Context(), s.ClientURL(), "test-node", nil)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer nc.Close()
	if !nc.IsConnected() {
		t.Fatalf("Connect: status %v, want connected", nc.Status())
	}
	if got := nc.Opts.Name; got != "test-node" {
		t.Errorf("connection name = %q, want %q", got, "test-node")
	}
	if got := nc.Opts.MaxReconnect; got != -1 {
		t.Errorf("MaxReconnect = %d, want -1 (forever)", got)
	}
}

// TestConnectBeforeServer starts a node before NATS: Connect succeeds at once
// and the connection comes up when the server does (SPEC §8.2).
func TestConnectBeforeServer(t *testing.T) {
	addr := testport.Addrs(t, 1)[0]

	nc, err := natsx.Connect(t.Context(), "nats://"+addr, "early", nil)
	if err != nil {
		t.Fatalf("Connect with no server: %v", err)
	}
	defer nc.Close()
	if nc.IsConnected() {
		t.Fatal("connected to a server that is not running")
	}
	// Nothing is buffered while disconnected: a publish fails at once.
	if err := nc.Publish("x", nil); !errors.Is(err, nats.ErrReconnectBufExceeded) {
		t.Errorf("Publish while disconnected = %v, want %v", err, nats.ErrReconnectBufExceeded)
	}

	s, err := natsx.StartServer(t.Context(), natsx.ServerConfig{DataDir: t.TempDir(), Listen: addr})
	if err != nil {
		t.Fatalf("StartServer on %s: %v", addr, err)
	}
	defer s.Shutdown(context.WithoutCancel(t.Context()))
	testwait.Until(t, 10*time.Second, "reconnected to the restarted server", func() error {
		if !nc.IsConnected() {
			return errors.New("not connected")
		}
		return nil
	})
}

func TestConnectCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if nc, err := natsx.Connect(ctx, "nats://127.0.0.1:1", "x", nil); err == nil {
		nc.Close()
		t.Fatal("Connect with a cancelled context = nil error")
	}
}

func TestDrainAndWait(t *testing.T) {
	s := natstest.Server(t)
	nc, err := natsx.Connect(t.Context(), s.ClientURL(), "drain", nil)
	if err != nil {
		t.Fatal(err)
	}
	var prevCalled atomic.Bool
	nc.SetClosedHandler(func(*nats.Conn) { prevCalled.Store(true) })
	got := make(chan string, 1)
	if _, err := nc.Subscribe("work", func(m *nats.Msg) {
		time.Sleep(100 * time.Millisecond) // a handler still running when the drain starts
		got <- string(m.Data)
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("work", []byte("job")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := natsx.DrainAndWait(ctx, nc); err != nil {
		t.Fatalf("DrainAndWait = %v", err)
	}
	if !nc.IsClosed() {
		t.Error("connection not closed after DrainAndWait")
	}
	select {
	case m := <-got:
		if m != "job" {
			t.Errorf("drained message = %q, want %q", m, "job")
		}
	default:
		t.Error("the in-flight message was not handled before the close")
	}
	// The previous closed handler runs on the same dispatcher, before ours.
	if !prevCalled.Load() {
		t.Error("the previous closed handler was not called")
	}
	// Closed already: not an error.
	if err := natsx.DrainAndWait(ctx, nc); err != nil {
		t.Errorf("DrainAndWait on a closed connection = %v, want nil", err)
	}
}

func TestDrainAndWaitDeadline(t *testing.T) {
	s := natstest.Server(t)
	nc, err := natsx.Connect(t.Context(), s.ClientURL(), "drain-deadline", nil)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	defer close(release)
	if _, err := nc.Subscribe("slow", func(*nats.Msg) { <-release }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("slow", nil); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	err = natsx.DrainAndWait(ctx, nc)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("DrainAndWait with a stuck handler = %v, want %v", err, context.DeadlineExceeded)
	}
	if !nc.IsClosed() {
		t.Error("connection not closed after the drain deadline")
	}
}

// TestStartServerBadStore points the JetStream store at a regular file.
func TestStartServerBadStore(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := natsx.StartServer(t.Context(), natsx.ServerConfig{DataDir: file, Listen: "127.0.0.1:0"})
	if err == nil {
		s.Shutdown(t.Context())
		t.Fatal("StartServer with a file as store dir = nil error")
	}
	if !strings.Contains(err.Error(), "JetStream") {
		t.Errorf("StartServer with a file as store dir = %q, want it to name JetStream", err)
	}
}
