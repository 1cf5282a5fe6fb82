package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/natsauth"
	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// replaceCopy copies src over dst atomically (0600), as a Secret update
// replaces a mounted file.
func replaceCopy(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst+".tmp", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dst+".tmp", dst); err != nil {
		t.Fatal(err)
	}
}

// TestRotateReload is the documented operator path against a real
// nats-server process: tpnats rotate --role verifier, then a configuration
// reload (SIGHUP). The verifier's ledger turns unavailable (consume and the
// readiness probe fail), and recovers on the same connection once its
// creds file is replaced. Before the reload the old credential still works.
func TestRotateReload(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nats")
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"init", "--dir", dir}, noEnv, &out, &errOut); code != 0 {
		t.Fatalf("init = %d\n%s", code, errOut.String())
	}
	conf := filepath.Join(dir, "server.conf")
	if err := os.WriteFile(conf, []byte("include \"auth.conf\"\ninclude \"tls.conf\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := natstest.StartExternal(t, "-c", conf)
	if code := run(t.Context(), []string{"setup", "--nats-url", srv.ClientURL(),
		"--nats-creds", filepath.Join(dir, natsauth.CredsFile(natsauth.Admin)), "--nats-ca", filepath.Join(dir, natsauth.CAFile),
		"--timeout", "10s", "--log-level", "warn"}, noEnv, &out, &errOut); code != 0 {
		t.Fatalf("setup = %d\n%s", code, errOut.String())
	}

	nodeCreds := filepath.Join(t.TempDir(), "verifier.creds")
	replaceCopy(t, filepath.Join(dir, natsauth.CredsFile(natsauth.Verifier)), nodeCreds)
	auth := &natsx.ClientAuth{CredsFile: nodeCreds, CAFile: filepath.Join(dir, natsauth.CAFile)}
	if errs := auth.Validate(time.Now()); len(errs) > 0 {
		t.Fatal(errs)
	}
	nc, err := natsx.ConnectAuth(t.Context(), srv.ClientURL(), "verifier-node", auth, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	led, err := ledger.New(t.Context(), ledger.Config{JetStream: natstest.JetStream(t, nc), MaxAge: 960 * time.Second, NoCreate: true, NodeID: "v1", Timeout: time.Second})
	if err != nil {
		t.Fatalf("ledger.New: %v", err)
	}
	defer led.Close()
	consume := func(jti string) error {
		return led.Consume(t.Context(), core.NewLedgerKey("https://issuer.example", jti), time.Minute, core.LedgerEntry{})
	}
	if err := consume("before"); err != nil {
		t.Fatalf("Consume before rotation: %v", err)
	}

	out.Reset()
	if code := run(t.Context(), []string{"rotate", "--dir", dir, "--role", "verifier", "--user-ttl", "1h"}, noEnv, &out, &errOut); code != 0 {
		t.Fatalf("rotate = %d\n%s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "revoked user U") {
		t.Errorf("rotate output does not name the revoked user:\n%s", out.String())
	}
	if fi, err := os.Stat(filepath.Join(dir, natsauth.CredsFile(natsauth.Verifier))); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new creds file: %v, want mode 0600", err)
	}
	if err := consume("not-yet-reloaded"); err != nil {
		t.Fatalf("Consume before the reload: %v (the server has not seen the revocation)", err)
	}

	reloadedAt := time.Now()
	if err := syscall.Kill(srv.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 30*time.Second, "revoked verifier's probe fails", func() error {
		if err := led.Probe(t.Context()); err == nil {
			return errors.New("probe still succeeds")
		}
		return nil
	})
	t.Logf("revocation effective %v after the reload signal", time.Since(reloadedAt))
	if err := consume("revoked"); !errors.Is(err, core.ErrLedgerUnavailable) {
		t.Fatalf("Consume while revoked = %v, want core.ErrLedgerUnavailable", err)
	}

	replacedAt := time.Now()
	replaceCopy(t, filepath.Join(dir, natsauth.CredsFile(natsauth.Verifier)), nodeCreds)
	testwait.Until(t, 30*time.Second, "verifier recovers with the new creds file", func() error {
		return led.Probe(t.Context())
	})
	t.Logf("recovered %v after the creds file was replaced", time.Since(replacedAt))
	if err := consume("after"); err != nil {
		t.Fatalf("Consume after new creds: %v", err)
	}
	if nc.Stats().Reconnects == 0 {
		t.Error("no reconnect counted: the recovery should be a reconnect of the same connection")
	}
}

// TestRotateUsage: rotate refuses an unknown role and a directory without
// signing.json, exit 2.
func TestRotateUsage(t *testing.T) {
	for _, args := range [][]string{
		{"rotate", "--dir", t.TempDir(), "--role", "root"},
		{"rotate", "--role", "verifier"},
		{"rotate", "--dir", t.TempDir(), "--role", "verifier"},
	} {
		var out, errOut bytes.Buffer
		if code := run(t.Context(), args, noEnv, &out, &errOut); code != exitUsage {
			t.Errorf("%q = %d, want %d\n%s", args, code, exitUsage, errOut.String())
		}
	}
}
