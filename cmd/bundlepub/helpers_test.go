package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
)

// bp runs bundlepub in-process, through the dispatch table, and returns the
// exit status and both outputs.
func bp(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(t.Context(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// mustBP runs bp and fails the test unless the exit status is 0.
func mustBP(t testing.TB, args ...string) string {
	t.Helper()
	code, out, errs := bp(t, args...)
	if code != 0 {
		t.Fatalf("bundlepub %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// world is a directory with a bundle-signing key, a client key, an
// authoring config, and the built and signed documents.
type world struct {
	dir                       string
	bundleKey, bundlePub      string
	clientPub                 string
	config                    string
	policy, trust             string // unsigned, from build
	signedPolicy, signedTrust string
}

const worldConfig = `{
  "version": "tpcluster-authoring-v1",
  "trust_domain": "example.local",
  "default_freshness_class": "offline-ok",
  "apis": [{"api_id": "orders-api", "audience": "orders-api"}],
  "clients": [{"name": "orders", "issuer": "https://issuer.example", "public_key_file": "client.pub",
               "subject_exact": "spiffe://example.local/workload/orders"}],
  "routes": [
    {"route_id": "orders.create", "method": "POST", "path_template": "/v1/orders", "api_id": "orders-api", "allowed_clients": ["orders"]},
    {"route_id": "orders.get", "method": "GET", "path_template": "/v1/orders/{id}", "api_id": "orders-api", "allowed_clients": ["orders"]}]
}`

func newWorld(t testing.TB) *world {
	t.Helper()
	d := t.TempDir()
	w := &world{
		dir:       d,
		bundleKey: filepath.Join(d, "bundle.key"), bundlePub: filepath.Join(d, "bundle.pub"),
		clientPub: filepath.Join(d, "client.pub"),
		config:    filepath.Join(d, "authoring.json"),
		policy:    filepath.Join(d, "policy.json"), trust: filepath.Join(d, "trust.json"),
		signedPolicy: filepath.Join(d, "policy.signed.json"), signedTrust: filepath.Join(d, "trust.signed.json"),
	}
	mustBP(t, "keygen", "--out", filepath.Join(d, "bundle"), "--kid", "bundle-1")
	mustBP(t, "keygen", "--out", filepath.Join(d, "client"), "--kid", "client-1")
	if err := os.WriteFile(w.config, []byte(worldConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	mustBP(t, "build", "--config", w.config, "--out-policy", w.policy, "--out-trust", w.trust, "--sequence", "3")
	mustBP(t, "sign", "--key", w.bundleKey, "--in", w.policy, "--out", w.signedPolicy)
	mustBP(t, "sign", "--key", w.bundleKey, "--in", w.trust, "--out", w.signedTrust)
	return w
}

func (w *world) path(name string) string { return filepath.Join(w.dir, name) }

// load reads and verifies a signed pair with the world's bundle key.
func (w *world) load(t testing.TB, policyPath, trustPath string) (*bundle.Policy, *bundle.TrustMaterial) {
	t.Helper()
	pub, err := keyfile.ReadPublic(w.bundlePub)
	if err != nil {
		t.Fatal(err)
	}
	o := bundle.Options{Keys: []bundle.VerifyKey{bundle.NewVerifyKey(pub)}}
	pb, err := os.ReadFile(policyPath)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := os.ReadFile(trustPath)
	if err != nil {
		t.Fatal(err)
	}
	p, err := bundle.ParsePolicy(pb, o)
	if err != nil {
		t.Fatal(err)
	}
	tm, err := bundle.ParseTrustMaterial(tb, o)
	if err != nil {
		t.Fatal(err)
	}
	return p, tm
}
