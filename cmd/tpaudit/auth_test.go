package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/natsauth"
	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
)

// TestAuditReaderRole: every reading subcommand works with the audit-reader
// role's credential alone (issue 12; gather creates a stream and needs
// admin's, and internal/natsauth shows the reader cannot create one); a
// creds file others can read is refused with exit 2 before any connection.
func TestAuditReaderRole(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nats")
	if err := natsauth.Generate(natsauth.Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	srv := natstest.ServerWithConfig(t, filepath.Join(dir, natsauth.AuthConfFile), filepath.Join(dir, natsauth.TLSConfFile))
	ca := filepath.Join(dir, natsauth.CAFile)
	admin := &natsx.ClientAuth{CredsFile: filepath.Join(dir, natsauth.CredsFile(natsauth.Admin)), CAFile: ca}
	if errs := admin.Validate(time.Now()); len(errs) > 0 {
		t.Fatal(errs)
	}
	nc, err := natsx.ConnectAuth(t.Context(), srv.ClientURL(), "test admin", admin, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	keys, trust := auditFleet(t, "node-a")
	fill(t, nc, "node-a", 9, keys["node-a"]) // as admin: the audit stream is created by admin

	reader := []string{"--nats-creds", filepath.Join(dir, natsauth.CredsFile(natsauth.AuditReader)), "--nats-ca", ca, "--connect-timeout", "2s"}
	as := func(args ...string) (int, string) {
		return tpaudit(t, srv.ClientURL(), append(args, reader...)...)
	}
	if code, out := as(append([]string{"verify"}, trust...)...); code != 0 || !strings.Contains(out, "every chain whole") {
		t.Errorf("verify as audit-reader = %d\n%s", code, out)
	}
	if code, out := as("tail", "--since", "1h", "--follow=false"); code != 0 || strings.Count(out, "\n") != 9 {
		t.Errorf("tail as audit-reader = %d\n%s", code, out)
	}
	if code, out := as("stats", "--window", "1h", "--json"); code != 0 || !strings.Contains(out, `"allowed": 3`) {
		t.Errorf("stats as audit-reader = %d\n%s", code, out)
	}
	file := filepath.Join(t.TempDir(), "audit.jsonl")
	if code, out := as("export", "--out", file); code != 0 {
		t.Errorf("export as audit-reader = %d\n%s", code, out)
	} else if b, _ := os.ReadFile(file); strings.Count(string(b), "\n") != 9 {
		t.Errorf("export as audit-reader wrote %d lines, want 9", strings.Count(string(b), "\n"))
	}

	open := filepath.Join(t.TempDir(), "open.creds")
	data, err := os.ReadFile(filepath.Join(dir, natsauth.CredsFile(natsauth.AuditReader)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(open, data, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := tpaudit(t, srv.ClientURL(), append([]string{"verify", "--nats-creds", open, "--nats-ca", ca}, trust...)...)
	if code != exitUsage || !strings.Contains(out, "--nats-creds="+open) || !strings.Contains(out, "0644") {
		t.Errorf("verify with a 0644 creds file = %d, want %d naming flag, file and mode\n%s", code, exitUsage, out)
	}
}
