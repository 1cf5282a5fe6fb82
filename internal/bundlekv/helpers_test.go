package bundlekv_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/bundlekv"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// keys are one fleet's bundle-signing and beacon keys.
type keys struct {
	bundle     bundle.SigningKey
	bundlePub  bundle.VerifyKey
	beacon     bundle.BeaconSigningKey
	beaconPub  bundle.BeaconVerifyKey
	dir        string
	policyPath string
	trustPath  string
}

// newKeys generates keys; a kid, if given, names the bundle-signing key
// (default bundle-1).
func newKeys(t testing.TB, kid ...string) *keys {
	t.Helper()
	bk, err := keyfile.Generate(append(kid, "bundle-1")[0])
	if err != nil {
		t.Fatal(err)
	}
	ck, err := keyfile.Generate("beacon-1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	return &keys{
		bundle: bundle.NewSigningKey(bk), bundlePub: bundle.NewVerifyKey(bk.Public()),
		beacon: bundle.NewBeaconSigningKey(ck), beaconPub: bundle.NewBeaconVerifyKey(ck.Public()),
		dir: dir, policyPath: filepath.Join(dir, "policy.json"), trustPath: filepath.Join(dir, "trust.json"),
	}
}

func (k *keys) options() bundle.Options { return bundle.Options{Keys: []bundle.VerifyKey{k.bundlePub}} }

// trustDoc returns signed trust material with sequence seq.
func (k *keys) trustDoc(t testing.TB, seq int64) []byte {
	t.Helper()
	return k.sign(t, k.bundle, map[string]any{
		"version": "trustplane-trust-material-v1", "kind": "trust_material", "sequence": seq,
		"issued_at": time.Now().UTC().Format(time.RFC3339),
		"issuers": []any{map[string]any{
			"issuer": "https://issuer.example", "trust_domain": "example.local", "source_type": "software_jwks",
			"keys": []any{map[string]any{"kid": fmt.Sprintf("caller-%d", seq), "alg": "EdDSA", "status": "active",
				"public_key_b64url": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}},
		}},
	})
}

// policyDoc returns a signed policy bundle with sequence seq, issued at
// issuedAt, with one route of each freshness class.
func (k *keys) policyDoc(t testing.TB, seq int64, issuedAt time.Time, extra ...map[string]any) []byte {
	t.Helper()
	src := []any{map[string]any{"source_type": "software_jwks", "issuer": "https://issuer.example",
		"trust_domain": "example.local", "subject_exact": "spiffe://example.local/a", "required_key_binding": "software"}}
	doc := map[string]any{
		"version": "trustplane-bundle-v1", "kind": "policy_runtime_bundle", "trust_domain": "example.local",
		"sequence": seq, "issued_at": issuedAt.UTC().Format(time.RFC3339),
		"apis": []any{map[string]any{"api_id": "a", "audience": "a-api", "base_url": "http://a"}},
		"route_groups": []any{map[string]any{"route_group_id": "g", "api_id": "a", "routes": []any{
			map[string]any{"route_id": "rt", "method": "GET", "path_template": "/rt", "freshness_class": "realtime", "allowed_sources": src},
			map[string]any{"route_id": "off", "method": "GET", "path_template": "/off", "freshness_class": "offline-ok", "allowed_sources": src},
		}}},
	}
	for _, e := range extra {
		maps.Copy(doc, e)
	}
	return k.sign(t, k.bundle, doc)
}

func (k *keys) sign(t testing.TB, sk bundle.SigningKey, doc map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	out, err := bundle.Sign(b, sk, "local://test")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// writeFiles writes the publisher's input files.
func (k *keys) writeFiles(t testing.TB, trust, policy []byte) {
	t.Helper()
	if err := os.WriteFile(k.trustPath, trust, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.policyPath, policy, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (k *keys) publisher(t testing.TB, js jetstream.JetStream, beacons bool) *bundlekv.Publisher {
	t.Helper()
	cfg := bundlekv.PublisherConfig{JetStream: js, TrustMaterial: k.trustPath, PolicyBundle: k.policyPath,
		Options: k.options(), BeaconInterval: 50 * time.Millisecond, WatchInterval: 20 * time.Millisecond}
	if beacons {
		cfg.BeaconKey = &k.beacon
	}
	p, err := bundlekv.NewPublisher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// events records a watcher's callbacks.
type events struct {
	mu       sync.Mutex
	applied  []bundlekv.Applied
	rejected []bundlekv.Rejection
}

func (e *events) onApply(a bundlekv.Applied) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.applied = append(e.applied, a)
}

func (e *events) onReject(r bundlekv.Rejection) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rejected = append(e.rejected, r)
}

func (e *events) rejections() []bundlekv.Rejection {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]bundlekv.Rejection(nil), e.rejected...)
}

func (e *events) applies() []bundlekv.Applied {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]bundlekv.Applied(nil), e.applied...)
}

// newWatcher builds a watcher for k's keys with fast reconciles and
// recorded callbacks; adjust cfg with mod.
func (k *keys) newWatcher(t testing.TB, js jetstream.JetStream, ev *events, mod ...func(*bundlekv.WatcherConfig)) *bundlekv.Watcher {
	t.Helper()
	cfg := bundlekv.WatcherConfig{
		JetStream: js, Options: k.options(), BeaconKeys: []bundle.BeaconVerifyKey{k.beaconPub},
		NodeID: "node-1", ReconcileInterval: 200 * time.Millisecond, Timeout: time.Second,
	}
	if ev != nil {
		cfg.OnApply, cfg.OnReject = ev.onApply, ev.onReject
	}
	for _, m := range mod {
		m(&cfg)
	}
	w, err := bundlekv.NewWatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// run runs f in a goroutine until the test ends, and waits for it.
func run(t testing.TB, f func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// waitPair waits until w holds the pair (trust, policy).
func waitPair(t testing.TB, w *bundlekv.Watcher, trust, policy int64) time.Duration {
	t.Helper()
	return testwait.Until(t, 10*time.Second, fmt.Sprintf("pair (%d, %d)", trust, policy), func() error {
		s := w.Snapshot()
		if s == nil {
			return fmt.Errorf("no pair")
		}
		if s.Trust.Sequence != trust || s.Policy.Sequence != policy {
			return fmt.Errorf("pair (%d, %d)", s.Trust.Sequence, s.Policy.Sequence)
		}
		return nil
	})
}

func contextWithCancel(t testing.TB) (context.Context, context.CancelFunc) {
	return context.WithCancel(t.Context())
}

func contextWithTimeout(t testing.TB, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), d)
}
