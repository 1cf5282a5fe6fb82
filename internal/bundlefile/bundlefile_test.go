package bundlefile

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// files is a signed pair on disk and the key that signs more.
type files struct {
	dir, trust, policy string
	key                *keyfile.PrivateKey
	opts               bundle.Options
}

func newFiles(t *testing.T) *files {
	t.Helper()
	k, err := keyfile.Generate("bf-1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := &files{dir: dir, trust: filepath.Join(dir, "trust.json"), policy: filepath.Join(dir, "policy.json"), key: k,
		opts: bundle.Options{Keys: []bundle.VerifyKey{bundle.NewVerifyKey(k.Public())}}}
	f.writeTrust(t, 1)
	f.writePolicy(t, 1, "/v1/a")
	return f
}

func (f *files) sign(t *testing.T, path string, doc map[string]any) {
	t.Helper()
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := bundle.Sign(b, bundle.NewSigningKey(f.key), "local://test")
	if err != nil {
		t.Fatal(err)
	}
	// Write and rename, as an operator's sync job does: a reader never
	// sees half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, signed, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func (f *files) writeTrust(t *testing.T, seq int) {
	f.sign(t, f.trust, map[string]any{
		"version": "trustplane-trust-material-v1", "kind": "trust_material", "sequence": seq,
		"issued_at": time.Now().UTC().Format(time.RFC3339),
		"issuers": []any{map[string]any{"issuer": "https://i.example", "trust_domain": "t", "source_type": "software_jwks",
			"keys": []any{map[string]any{"kid": "k", "alg": "EdDSA", "status": "active",
				"public_key_b64url": "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"}}}},
	})
}

func (f *files) writePolicy(t *testing.T, seq int, path string) {
	f.sign(t, f.policy, map[string]any{
		"version": "trustplane-bundle-v1", "kind": "policy_runtime_bundle", "trust_domain": "t",
		"sequence": seq, "issued_at": time.Now().UTC().Format(time.RFC3339),
		"apis": []any{map[string]any{"api_id": "a", "audience": "aud", "base_url": "http://x"}},
		"route_groups": []any{map[string]any{"route_group_id": "g", "api_id": "a", "routes": []any{
			map[string]any{"route_id": "r", "method": "GET", "path_template": path, "freshness_class": "offline-ok",
				"allowed_sources": []any{map[string]any{"source_type": "software_jwks", "issuer": "https://i.example",
					"trust_domain": "t", "subject_exact": "s"}}},
		}}},
	})
}

// source runs a Source over f until the test ends and counts rejections.
func (f *files) source(t *testing.T) (*Source, *atomic.Int64) {
	t.Helper()
	rejected := new(atomic.Int64)
	s, err := New(Config{TrustMaterial: f.trust, PolicyBundle: f.policy, Options: f.opts,
		Interval: 20 * time.Millisecond, OnReject: func(string, error) { rejected.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	ctx := t.Context()
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { <-done })
	return s, rejected
}

// waitSnap waits until ok(snapshot), with a generous deadline.
func waitSnap(t *testing.T, s *Source, what string, ok func(*bundle.Snapshot) bool) {
	t.Helper()
	testwait.Until(t, 10*time.Second, what, func() error {
		if sn := s.Snapshot(); !ok(sn) {
			return fmt.Errorf("snapshot is policy %d, trust %d, view time %s", sn.Policy.Sequence, sn.Trust.Sequence, sn.ViewTime)
		}
		return nil
	})
}

func TestReload(t *testing.T) {
	f := newFiles(t)
	s, rejected := f.source(t)
	first := s.Snapshot()
	if first.Policy.Sequence != 1 || first.Policy.Resolve("GET", "/v1/a") == nil {
		t.Fatalf("first snapshot: policy %d", first.Policy.Sequence)
	}

	// A new policy replaces the pair; the trust material stays the same
	// pointer, so one request never mixes two loads.
	f.writePolicy(t, 2, "/v1/b")
	waitSnap(t, s, "policy 2 applied", func(sn *bundle.Snapshot) bool { return sn.Policy.Sequence == 2 })
	sn := s.Snapshot()
	if sn.Policy.Resolve("GET", "/v1/b") == nil || sn.Trust != first.Trust {
		t.Errorf("after the policy change: route b %v, trust reused %v", sn.Policy.Resolve("GET", "/v1/b") != nil, sn.Trust == first.Trust)
	}

	// A broken file is refused and the last good pair stays.
	if err := os.WriteFile(f.policy, []byte(`{"version":"trustplane-bundle-v1"`), 0o644); err != nil {
		t.Fatal(err)
	}
	waitSnap(t, s, "broken file rejected", func(*bundle.Snapshot) bool { return rejected.Load() > 0 })
	if got := s.Snapshot(); got.Policy.Sequence != 2 {
		t.Errorf("after a broken file: policy %d, want 2 kept", got.Policy.Sequence)
	}

	// A validly signed rollback is refused too.
	before := rejected.Load()
	f.writePolicy(t, 1, "/v1/old")
	waitSnap(t, s, "rollback rejected", func(*bundle.Snapshot) bool { return rejected.Load() > before })
	if got := s.Snapshot(); got.Policy.Sequence != 2 || got.Policy.Resolve("GET", "/v1/old") != nil {
		t.Errorf("after a rollback: policy %d", got.Policy.Sequence)
	}

	// A touch moves the view time (SPEC §8.3 file mode).
	f.writePolicy(t, 3, "/v1/c")
	waitSnap(t, s, "policy 3", func(sn *bundle.Snapshot) bool { return sn.Policy.Sequence == 3 })
	view := s.Snapshot().ViewTime
	later := view.Add(2 * time.Second)
	if err := os.Chtimes(f.policy, later, later); err != nil {
		t.Fatal(err)
	}
	waitSnap(t, s, "view time follows the touch", func(sn *bundle.Snapshot) bool { return sn.ViewTime.Equal(later) })

	// A touch far into the future does not keep the pair fresh until then.
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(f.policy, future, future); err != nil {
		t.Fatal(err)
	}
	waitSnap(t, s, "future touch applied", func(sn *bundle.Snapshot) bool { return !sn.ViewTime.Equal(later) })
	if vt := s.Snapshot().ViewTime; vt.After(time.Now()) {
		t.Errorf("view time after a touch an hour ahead = %s, want the load time", vt)
	}
}

func TestNewRefusesBadFiles(t *testing.T) {
	f := newFiles(t)
	f.opts.Keys = nil // no key accepts the signature
	_, err := New(Config{TrustMaterial: f.trust, PolicyBundle: f.policy, Options: f.opts})
	if err == nil || !strings.Contains(err.Error(), "trust material") {
		t.Errorf("New with an unknown signing key = %v", err)
	}
	if _, err := New(Config{TrustMaterial: f.trust}); err == nil {
		t.Error("New without a policy file succeeded")
	}
}
