package loadgen

import (
	"context"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/demo"
	"github.com/tpcluster/tpcluster/internal/testport"
)

// TestRunVerifierd sends mixed load through real verifierd processes (two
// nodes sharing one embedded NATS ledger) and checks every outcome count
// exactly against the plan, with no errors.
func TestRunVerifierd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts verifierd")
	}
	bin := buildVerifierd(t)
	dir := t.TempDir()
	files, err := Prepare(filepath.Join(dir, "world"))
	if err != nil {
		t.Fatal(err)
	}
	world, err := LoadWorld(filepath.Join(dir, "world"))
	if err != nil {
		t.Fatal(err)
	}
	up, err := demo.StartUpstream(t.Context(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	natsAddr := testport.Addrs(t, 1)[0]
	common := []string{"--upstream", up.URL, "--trust-material", files.TrustMaterial,
		"--policy-bundle", files.PolicyBundle, "--bundle-public-key", files.BundlePublicKey, "--log-level", "warn"}
	aDir := t.TempDir()
	a := startVerifierd(t, bin, append(common, "--nats-listen", natsAddr, "--node-id", "a", "--data-dir", aDir)...)
	// a's embedded server requires a credential: b joins as the verifier
	// role with the one a wrote (issue 12).
	b := startVerifierd(t, bin, append(common, "--nats-url", "nats://"+natsAddr, "--node-id", "b",
		"--nats-creds", filepath.Join(aDir, "nats-auth", "verifier.creds"))...)

	mix := Mix{GetShare: 0.5, BodySizes: []int{64, 4096}, ReplayShare: 0.15, TamperShare: 0.1, BadPassportShare: 0.1}
	for _, tc := range []struct {
		name   string
		fanOut bool
		rate   float64
	}{
		{"closed round robin", false, 0},
		{"closed same request to every node", true, 0},
		{"open round robin", false, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mix.Seed++
			plan, err := NewPlan(PlanConfig{World: world, Mix: mix, Sends: 600, Targets: 2, FanOut: tc.fanOut, Workers: 2})
			if err != nil {
				t.Fatal(err)
			}
			rep, err := Run(t.Context(), Config{
				Plan: plan, Targets: []string{a, b}, Rate: tc.rate, Workers: 16, Duration: time.Minute,
			})
			if err != nil {
				t.Fatal(err)
			}
			k := plan.byKind
			want := map[string]int64{
				"allowed":                    int64(plan.groups),
				"jti_replay":                 int64(k[Fresh] + k[Replay] - plan.groups),
				"request_binding_mismatch":   int64(k[Tampered]),
				"passport_signature_invalid": int64(k[BadSignature]),
				"passport_malformed":         int64(k[Malformed]),
			}
			if !maps.Equal(rep.Outcomes, want) || rep.Answered != 600 {
				t.Errorf("outcomes = %v (%d answered), want %v (600)", rep.Outcomes, rep.Answered, want)
			}
			if n := rep.Errors.Total(); n != 0 {
				t.Errorf("%d errors: %+v", n, rep.Errors)
			}
			if !maps.Equal(rep.Expected, want) {
				t.Errorf("report's expected = %v, want %v", rep.Expected, want)
			}
		})
	}
}

// buildVerifierd builds cmd/verifierd into a temporary directory.
func buildVerifierd(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "verifierd")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./cmd/verifierd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/verifierd: %v\n%s", err, out)
	}
	return bin
}

// startVerifierd starts bin with args on a free loopback port, waits until
// it is ready and stops it on cleanup. It returns its base URL.
func startVerifierd(t *testing.T, bin string, args ...string) string {
	t.Helper()
	listen := testport.Addrs(t, 1)[0]
	cmd := exec.Command(bin, append([]string{"--listen", listen, "--data-dir", t.TempDir()}, args...)...)
	logs, err := os.Create(filepath.Join(t.TempDir(), "verifierd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logs.Name())
			t.Logf("verifierd %s log:\n%s", listen, b)
		}
		logs.Close()
	})
	base := "http://" + listen
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for {
		select {
		case <-exited:
			t.Fatalf("verifierd %s exited before it was ready", listen)
		case <-ctx.Done():
			t.Fatalf("verifierd %s not ready within 60s", listen)
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := http.Get(base + "/_tp/readyz")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return base
		}
	}
}
