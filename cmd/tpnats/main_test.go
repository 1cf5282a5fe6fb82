package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/natsauth"
	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
)

func noEnv(string) (string, bool) { return "", false }

// TestInitSetup runs init, starts a real server with what it wrote, and
// runs setup as admin: the streams exist, locked; a second setup keeps
// them; setup with another role's credential is refused.
func TestInitSetup(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nats")
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"init", "--dir", dir, "--host", "nats.example"}, noEnv, &out, &errOut); code != 0 {
		t.Fatalf("init = %d\n%s", code, errOut.String())
	}
	for _, r := range natsauth.Roles() {
		fi, err := os.Stat(filepath.Join(dir, natsauth.CredsFile(r)))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", natsauth.CredsFile(r), err, fi.Mode().Perm())
		}
	}
	if code := run(t.Context(), []string{"init", "--dir", dir}, noEnv, &out, &errOut); code != exitUsage {
		t.Errorf("init over an existing set = %d, want %d", code, exitUsage)
	}

	s := natstest.ServerWithConfig(t, filepath.Join(dir, natsauth.AuthConfFile), filepath.Join(dir, natsauth.TLSConfFile))
	setup := func(role natsauth.Role) (int, string) {
		var o, e bytes.Buffer
		code := run(t.Context(), []string{"setup", "--nats-url", s.ClientURL(),
			"--nats-creds", filepath.Join(dir, natsauth.CredsFile(role)), "--nats-ca", filepath.Join(dir, natsauth.CAFile),
			"--timeout", "5s", "--log-level", "warn"}, noEnv, &o, &e)
		return code, o.String() + e.String()
	}
	for range 2 {
		if code, msg := setup(natsauth.Admin); code != 0 {
			t.Fatalf("setup as admin = %d\n%s", code, msg)
		}
	}
	if code, msg := setup(natsauth.Verifier); code == 0 {
		t.Errorf("setup as verifier = 0, want refused\n%s", msg)
	}
	// What setup made, read as admin.
	adminJS := adminJetStream(t, dir, s.ClientURL())
	for _, name := range []string{"KV_TRUSTPLANE_REPLAY", "KV_TRUSTPLANE_BUNDLES", audit.DefaultStream} {
		st, err := adminJS.Stream(t.Context(), name)
		if err != nil {
			t.Errorf("stream %s after setup: %v", name, err)
			continue
		}
		cfg := st.CachedInfo().Config
		if name != "KV_TRUSTPLANE_BUNDLES" && (!cfg.DenyDelete || !cfg.DenyPurge) {
			t.Errorf("stream %s: deny_delete %t, deny_purge %t; want both", name, cfg.DenyDelete, cfg.DenyPurge)
		}
	}
}

func TestSetupBadCreds(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nats")
	if err := natsauth.Generate(natsauth.Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(dir, natsauth.CredsFile(natsauth.Admin))
	if err := os.Chmod(creds, 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run(t.Context(), []string{"setup", "--nats-url", "nats://127.0.0.1:1", "--nats-creds", creds}, noEnv, &out, &errOut)
	if code != exitUsage || !strings.Contains(errOut.String(), "--nats-creds="+creds) || !strings.Contains(errOut.String(), "0644") {
		t.Errorf("setup with a 0644 creds file = %d\n%s\nwant %d naming the flag, the file and the mode", code, errOut.String(), exitUsage)
	}
}

func adminJetStream(t *testing.T, dir, url string) jetstream.JetStream {
	t.Helper()
	auth := &natsx.ClientAuth{CredsFile: filepath.Join(dir, natsauth.CredsFile(natsauth.Admin)), CAFile: filepath.Join(dir, natsauth.CAFile)}
	if errs := auth.Validate(time.Now()); len(errs) > 0 {
		t.Fatal(errs)
	}
	nc, err := natsx.ConnectAuth(t.Context(), url, "test admin", auth, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return natstest.JetStream(t, nc)
}

func TestProbe(t *testing.T) {
	healthy := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !healthy {
			http.Error(w, `{"status":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, `{"status":"ok"}`)
	}))
	defer srv.Close()
	probe := func(url string) int {
		var o, e bytes.Buffer
		return run(t.Context(), []string{"probe", "--url", url}, noEnv, &o, &e)
	}
	if code := probe(srv.URL + "/healthz"); code != 0 {
		t.Errorf("probe of a healthy server = %d, want 0", code)
	}
	healthy = false
	if code := probe(srv.URL + "/healthz"); code != exitFailure {
		t.Errorf("probe of an unhealthy server = %d, want %d", code, exitFailure)
	}
	if code := probe("http://192.0.2.1:8222/healthz"); code != exitUsage {
		t.Errorf("probe of a non-loopback URL = %d, want %d", code, exitUsage)
	}
}
