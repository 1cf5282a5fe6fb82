package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/testport"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// TestPrepare: --prepare writes the demo world with private keys 0600 and
// exits.
func TestPrepare(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	var out bytes.Buffer
	if err := run(t.Context(), []string{"--prepare", dir}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for name, perm := range map[string]os.FileMode{"caller.key": 0o600, "bundle.key": 0o600, "bundle.pub": 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != perm {
			t.Errorf("%s mode = %v, want %v", name, fi.Mode().Perm(), perm)
		}
	}
	for _, name := range []string{"trust-material.json", "policy-bundle.json"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
}

// TestPrepareAuditNodes: --audit-nodes gives each node an audit key (0600)
// whose public key the signed trust material lists as an active fleet
// member; a second run reuses the keys.
func TestPrepareAuditNodes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	args := []string{"--prepare", dir, "--audit-nodes", "node-1:8081,node-2:8082"}
	if err := run(t.Context(), args, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	read := func() *bundle.TrustMaterial {
		t.Helper()
		pub, err := keyfile.ReadPublic(filepath.Join(dir, "bundle.pub"))
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, "trust-material.json"))
		if err != nil {
			t.Fatal(err)
		}
		tm, err := bundle.ParseTrustMaterial(data, bundle.Options{Keys: []bundle.VerifyKey{bundle.NewVerifyKey(pub)}})
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tm := read()
	if len(tm.AuditNodes) != 2 {
		t.Fatalf("audit_nodes = %+v, want 2", tm.AuditNodes)
	}
	for i, node := range []string{"node-1:8081", "node-2:8082"} {
		file := []string{"audit-node-1_8081.key", "audit-node-2_8082.key"}[i]
		k, err := keyfile.ReadPrivate(filepath.Join(dir, file)) // refuses a mode other than 0600
		if err != nil {
			t.Fatal(err)
		}
		n := tm.AuditNodes[i]
		if n.NodeID != node || !n.Active || !bytes.Equal(n.PublicKey, k.Public().Key) {
			t.Errorf("audit_nodes[%d] = %+v, want %s active with the key in its file", i, n, node)
		}
	}
	if err := run(t.Context(), args, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if again := read(); !bytes.Equal(again.AuditNodes[0].PublicKey, tm.AuditNodes[0].PublicKey) {
		t.Error("a second --prepare replaced node-1's audit key")
	}
}

// TestServe: the upstream answers with what reached it and stops when its
// context ends.
func TestServe(t *testing.T) {
	addr := testport.Addrs(t, 1)[0]
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--listen", addr}, io.Discard, io.Discard) }()

	var resp *http.Response
	testwait.Until(t, 10*time.Second, "demoapi listening", func() error {
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/orders/ord_1", nil)
		req.Header.Set("X-TrustPlane-Route-Id", "orders.get")
		var err error
		resp, err = http.DefaultClient.Do(req)
		return err
	})
	var echo struct {
		Target  string
		Headers map[string]string
	}
	err := json.NewDecoder(resp.Body).Decode(&echo)
	resp.Body.Close()
	if err != nil || echo.Target != "/v1/orders/ord_1" || echo.Headers["X-Trustplane-Route-Id"] != "orders.get" {
		t.Errorf("echo = %+v, %v", echo, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run = %v after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("demoapi did not stop")
	}
}

func TestUsage(t *testing.T) {
	if err := run(t.Context(), []string{"extra"}, io.Discard, io.Discard); err == nil {
		t.Error("run with an unexpected argument = nil, want a usage error")
	}
}
