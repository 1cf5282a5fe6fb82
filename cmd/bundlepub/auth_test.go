package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/bundlekv"
	"github.com/tpcluster/tpcluster/internal/natsauth"
	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
)

// TestPublishAsRole: with the bundlepub role's credential, publish writes
// the bucket admin made (before that it waits for it, up to 30s, never
// creating it: e2e TestNATSLockedBundleBucket); with another operator's
// credential it exits 2 (refused); a 0644 creds file exits 2 before any
// connection (issue 12).
func TestPublishAsRole(t *testing.T) {
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "nats")
	other := filepath.Join(t.TempDir(), "other")
	for _, d := range []string{dir, other} {
		if err := natsauth.Generate(natsauth.Options{Dir: d}); err != nil {
			t.Fatal(err)
		}
	}
	srv := natstest.ServerWithConfig(t, filepath.Join(dir, natsauth.AuthConfFile), filepath.Join(dir, natsauth.TLSConfFile))
	ca := filepath.Join(dir, natsauth.CAFile)
	publish := func(creds string) (int, string, string) {
		return bp(t, "publish", "--nats-url", srv.ClientURL(), "--nats-creds", creds, "--nats-ca", ca,
			"--trust-material", w.signedTrust, "--policy-bundle", w.signedPolicy, "--bundle-public-key", w.bundlePub, "--timeout", "2s")
	}
	role := filepath.Join(dir, natsauth.CredsFile(natsauth.Bundlepub))

	admin := &natsx.ClientAuth{CredsFile: filepath.Join(dir, natsauth.CredsFile(natsauth.Admin)), CAFile: ca}
	if errs := admin.Validate(time.Now()); len(errs) > 0 {
		t.Fatal(errs)
	}
	nc, err := natsx.ConnectAuth(t.Context(), srv.ClientURL(), "test admin", admin, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := bundlekv.EnsureBucket(t.Context(), js, "", 1); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := publish(role); code != 0 {
		t.Fatalf("publish as bundlepub = %d\n%s%s", code, out, errs)
	}
	kv, err := js.KeyValue(t.Context(), bundlekv.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(t.Context(), bundlekv.KeyPolicyBundle); err != nil {
		t.Errorf("policy bundle after publish as bundlepub: %v", err)
	}

	if code, _, errs := publish(filepath.Join(other, natsauth.CredsFile(natsauth.Bundlepub))); code != 2 || !strings.Contains(errs, "auth") {
		t.Errorf("publish with another operator's credential = %d, want 2 and an auth failure\n%s", code, errs)
	}
	open := filepath.Join(t.TempDir(), "open.creds")
	data, err := os.ReadFile(role)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(open, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := publish(open); code != 2 || !strings.Contains(errs, "--nats-creds="+open) {
		t.Errorf("publish with a 0644 creds file = %d, want 2 naming the flag and file\n%s", code, errs)
	}
}
