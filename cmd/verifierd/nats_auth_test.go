package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/tpcluster/tpcluster/internal/natsauth"
	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/testport"
)

// TestNewNodeNATSRefused: a NATS server whose certificate is for another
// name, or that refuses the credential, stops the node before it listens,
// with a permanent ConnectError (main exits 2 on it).
func TestNewNodeNATSRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nats")
	if err := natsauth.Generate(natsauth.Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	if err := natsauth.Generate(natsauth.Options{Dir: other}); err != nil {
		t.Fatal(err)
	}
	conf := []string{filepath.Join(dir, natsauth.AuthConfFile), filepath.Join(dir, natsauth.TLSConfFile)}
	// 127.0.0.2: the certificate names 127.0.0.1, ::1 and localhost only.
	wrongName, err := natsx.StartServer(t.Context(), natsx.ServerConfig{DataDir: t.TempDir(), Listen: "127.0.0.2:0", ConfigFiles: conf})
	if err != nil {
		t.Fatal(err)
	}
	defer wrongName.Shutdown(context.WithoutCancel(t.Context()))
	right, err := natsx.StartServer(t.Context(), natsx.ServerConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0", ConfigFiles: conf})
	if err != nil {
		t.Fatal(err)
	}
	defer right.Shutdown(context.WithoutCancel(t.Context()))

	tests := []struct {
		name, url, creds, wantKind string
	}{
		{"certificate for another name", wrongName.ClientURL(), filepath.Join(dir, natsauth.CredsFile(natsauth.Verifier)), natsx.KindTLS},
		{"credential of another operator", right.ClientURL(), filepath.Join(other, natsauth.CredsFile(natsauth.Verifier)), natsx.KindAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ignore := goleak.IgnoreCurrent()
			addrs := testport.Addrs(t, 2)
			args := append(nodeArgs(t, addrs[0], addrs[1]), "--nats-url", tt.url,
				"--nats-creds", tt.creds, "--nats-ca", filepath.Join(dir, natsauth.CAFile))
			n, err := newNode(t.Context(), testConfig(t, args), slog.New(slog.DiscardHandler), io.Discard)
			if err == nil {
				n.Run(canceled(t))
				t.Fatal("newNode = nil error, want a refused connection")
			}
			ce, ok := errors.AsType[*natsx.ConnectError](err)
			if !ok || ce.Kind != tt.wantKind || !ce.Permanent() {
				t.Fatalf("newNode = %v, want a permanent %s ConnectError", err, tt.wantKind)
			}
			t.Logf("newNode: %v", err)
			checkNothingLeft(t, ignore, addrs[0])
		})
	}
}
