package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tpcluster/tpcluster/internal/demo"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/testport"
)

// nodeArgs is a file-mode node on loopback with the demo's signed bundles:
// it starts an embedded NATS server on natsAddr and listens on httpAddr.
func nodeArgs(t *testing.T, httpAddr, natsAddr string) []string {
	t.Helper()
	dir := t.TempDir()
	f, err := demo.Prepare(filepath.Join(dir, "demo"))
	if err != nil {
		t.Fatal(err)
	}
	return []string{
		"--listen", httpAddr, "--nats-listen", natsAddr, "--data-dir", filepath.Join(dir, "data"),
		"--trust-material", f.TrustMaterial, "--policy-bundle", f.PolicyBundle,
		"--bundle-public-key", f.BundlePublicKey, "--shutdown-timeout", "5s",
	}
}

func testConfig(t *testing.T, args []string) *Config {
	t.Helper()
	cfg, err := parseConfig(args, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return cfg
}

// checkNothingLeft fails unless every goroutine started since ignore has
// exited and each address can be listened on again.
func checkNothingLeft(t *testing.T, ignore goleak.Option, addrs ...string) {
	t.Helper()
	goleak.VerifyNone(t, ignore)
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("%s still in use after the node stopped: %v", a, err)
			continue
		}
		ln.Close()
	}
}

// TestNewNodeFailsCleanly starts a node that fails at each stage of
// newNode and shows it leaves nothing behind: no goroutine (the embedded
// server's, the NATS connection's, the spool's fsync loop), no listening
// port (HTTP and embedded NATS can be bound again).
func TestNewNodeFailsCleanly(t *testing.T) {
	tests := []struct {
		name    string
		args    func(t *testing.T, s *setup) []string
		timeout time.Duration // bounds the ledger's retries
		wantErr string
	}{
		{
			name: "embedded NATS port taken",
			args: func(t *testing.T, s *setup) []string {
				s.hold(t, s.nats)
				return nodeArgs(t, s.http, s.nats)
			},
			wantErr: "nats",
		},
		{
			name: "NATS unreachable",
			args: func(t *testing.T, s *setup) []string {
				return append(nodeArgs(t, s.http, s.nats), "--nats-url", "nats://"+testport.Addrs(t, 1)[0])
			},
			timeout: 2 * time.Second,
			wantErr: "replay ledger",
		},
		{
			name: "ledger creation failing",
			args: func(t *testing.T, s *setup) []string {
				// A single embedded server cannot hold a replicated bucket.
				return append(nodeArgs(t, s.http, s.nats), "--ledger-replicas", "3")
			},
			timeout: 2 * time.Second,
			wantErr: "replay ledger",
		},
		{
			name: "audit spool unusable",
			args: func(t *testing.T, s *setup) []string {
				f := filepath.Join(t.TempDir(), "not-a-dir")
				if err := os.WriteFile(f, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				return append(nodeArgs(t, s.http, s.nats), "--audit-spool-dir", f)
			},
			wantErr: "not-a-dir",
		},
		{
			name: "audit key readable by others",
			args: func(t *testing.T, s *setup) []string {
				k, err := keyfile.Generate("audit")
				if err != nil {
					t.Fatal(err)
				}
				base := filepath.Join(t.TempDir(), "audit")
				if err := k.Write(base); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(base+".key", 0o644); err != nil {
					t.Fatal(err)
				}
				return append(nodeArgs(t, s.http, s.nats), "--audit-key", base+".key")
			},
			wantErr: "--audit-key",
		},
		{
			name: "bundle key unreadable",
			args: func(t *testing.T, s *setup) []string {
				return append(nodeArgs(t, s.http, s.nats), "--bundle-public-key", filepath.Join(t.TempDir(), "missing.pub"))
			},
			wantErr: "--bundle-public-key",
		},
		{
			name: "bad bundle",
			args: func(t *testing.T, s *setup) []string {
				f := filepath.Join(t.TempDir(), "policy.json")
				if err := os.WriteFile(f, []byte(`{"not":"a bundle"}`), 0o600); err != nil {
					t.Fatal(err)
				}
				return append(nodeArgs(t, s.http, s.nats), "--policy-bundle", f)
			},
			wantErr: "bundlefile",
		},
		{
			name: "listen address taken",
			args: func(t *testing.T, s *setup) []string {
				s.hold(t, s.http)
				return nodeArgs(t, s.http, s.nats)
			},
			wantErr: "listen " + "127.0.0.1",
		},
		{
			name: "grpc address taken",
			args: func(t *testing.T, s *setup) []string {
				p := testport.Addrs(t, 1)[0]
				s.hold(t, p)
				return append(nodeArgs(t, s.http, s.nats), "--grpc-listen", p)
			},
			wantErr: "--grpc-listen",
		},
		{
			name: "pprof address taken",
			args: func(t *testing.T, s *setup) []string {
				p := testport.Addrs(t, 1)[0]
				s.hold(t, p)
				return append(nodeArgs(t, s.http, s.nats), "--pprof-listen", p)
			},
			wantErr: "--pprof-listen",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ignore := goleak.IgnoreCurrent()
			addrs := testport.Addrs(t, 2)
			s := &setup{http: addrs[0], nats: addrs[1]}
			cfg := testConfig(t, tt.args(t, s))
			ctx := t.Context()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			start := time.Now()
			n, err := newNode(ctx, cfg, slog.New(slog.DiscardHandler), io.Discard)
			if err == nil {
				n.Run(canceled(t))
				t.Fatalf("newNode succeeded, want an error containing %q", tt.wantErr)
			}
			t.Logf("newNode failed after %v: %v", time.Since(start), err)
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("newNode error = %q, want it to contain %q", err, tt.wantErr)
			}
			s.release()
			checkNothingLeft(t, ignore, s.http, s.nats)
		})
	}
}

// TestNodeRunStops: a node that started serves readyz and, on
// --grpc-listen, the gRPC health service (SERVING), and after its context
// ends Run returns with nothing left behind, the gRPC listener and its
// goroutines included.
func TestNodeRunStops(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	addrs := testport.Addrs(t, 3)
	cfg := testConfig(t, append(nodeArgs(t, addrs[0], addrs[1]), "--grpc-listen", addrs[2]))
	n, err := newNode(t.Context(), cfg, slog.New(slog.DiscardHandler), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()

	client := &http.Client{Timeout: 5 * time.Second}
	start := time.Now()
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := client.Get("http://" + addrs[0] + "/_tp/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz never answered 200: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("ready after %v", time.Since(start))
	client.CloseIdleConnections()
	conn, err := grpc.NewClient(addrs[2], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	hctx, hcancel := context.WithTimeout(t.Context(), 30*time.Second)
	hresp, err := healthpb.NewHealthClient(conn).Check(hctx, &healthpb.HealthCheckRequest{})
	hcancel()
	if err != nil || hresp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("grpc health = %v, %v; want SERVING", hresp, err)
	}
	conn.Close()

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil after its context ended", err)
	}
	checkNothingLeft(t, ignore, addrs...)
}

// TestGRPCHealthAtShutdown: once a node begins to shut down, its gRPC
// health service answers NOT_SERVING during --shutdown-delay, while the
// listener still serves (Envoy's health checks take it out first), and
// Run then returns with nothing left behind.
func TestGRPCHealthAtShutdown(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	addrs := testport.Addrs(t, 3)
	cfg := testConfig(t, append(nodeArgs(t, addrs[0], addrs[1]), "--grpc-listen", addrs[2], "--shutdown-delay", "3s"))
	n, err := newNode(t.Context(), cfg, slog.New(slog.DiscardHandler), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	conn, err := grpc.NewClient(addrs[2], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	hc := healthpb.NewHealthClient(conn)
	status := func() (healthpb.HealthCheckResponse_ServingStatus, error) {
		hctx, hcancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer hcancel()
		r, err := hc.Check(hctx, &healthpb.HealthCheckRequest{})
		return r.GetStatus(), err
	}
	waitFor := func(want healthpb.HealthCheckResponse_ServingStatus) time.Duration {
		t.Helper()
		start := time.Now()
		for deadline := start.Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			got, err := status()
			if err == nil && got == want {
				return time.Since(start)
			}
			if time.Now().After(deadline) {
				t.Fatalf("grpc health never %v: last %v, %v", want, got, err)
			}
		}
	}
	t.Logf("SERVING after %v", waitFor(healthpb.HealthCheckResponse_SERVING))
	cancel()
	t.Logf("NOT_SERVING %v after the shutdown began", waitFor(healthpb.HealthCheckResponse_NOT_SERVING))
	conn.Close()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil after its context ended", err)
	}
	checkNothingLeft(t, ignore, addrs...)
}

// setup is one stage's addresses and the listeners it holds so that the
// node finds them taken.
type setup struct {
	http, nats string
	held       []net.Listener
}

// hold listens on addr until release.
func (s *setup) hold(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s.held = append(s.held, ln)
	t.Cleanup(func() { ln.Close() })
}

func (s *setup) release() {
	for _, ln := range s.held {
		ln.Close()
	}
}

func canceled(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx
}
