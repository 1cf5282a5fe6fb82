package natsauth_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/natsauth"
	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// recoverWait bounds how long a revoked node takes to notice, and a node
// with a new creds file to reconnect (reconnect wait plus jitter, on a
// busy machine).
const recoverWait = 30 * time.Second

// copyFile copies src over dst atomically, mode 0600: what a Secret update
// does to a mounted file.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// countHandler counts log records whose error attribute holds msg.
type countHandler struct {
	msg string
	n   atomic.Int64
}

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *countHandler) WithGroup(string) slog.Handler            { return h }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" && strings.Contains(a.Value.String(), h.msg) {
			h.n.Add(1)
		}
		return true
	})
	return nil
}

// TestRotateRevokesAndNodeRecovers: a verifier consumes with its
// credential; Rotate revokes it and the server, given the new account JWT,
// drops the connection: consumes and the readiness probe fail with
// core.ErrLedgerUnavailable. Once the node's creds file holds the new
// credential, the same connection reconnects and consumes work, no
// restart. The old credential stays refused.
func TestRotateRevokesAndNodeRecovers(t *testing.T) {
	s := newSecured(t)
	s.provision(t)

	// The node's own copy of its credential, as a mounted Secret is.
	nodeCreds := filepath.Join(t.TempDir(), "verifier.creds")
	copyFile(t, filepath.Join(s.dir, natsauth.CredsFile(natsauth.Verifier)), nodeCreds)
	auth := &natsx.ClientAuth{CredsFile: nodeCreds, CAFile: filepath.Join(s.dir, natsauth.CAFile)}
	if errs := auth.Validate(time.Now()); len(errs) > 0 {
		t.Fatal(errs)
	}
	refused := &countHandler{msg: "authorization violation"}
	nc, err := natsx.ConnectAuth(t.Context(), s.srv.ClientURL(), "verifier-node", auth, slog.New(refused))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	oldCreds := filepath.Join(t.TempDir(), "old.creds")
	copyFile(t, nodeCreds, oldCreds)
	led, err := ledger.New(t.Context(), ledger.Config{JetStream: js, MaxAge: testMaxAge, NoCreate: true, NodeID: "v1", Timeout: time.Second})
	if err != nil {
		t.Fatalf("ledger.New: %v", err)
	}
	defer led.Close()
	if err := led.Consume(t.Context(), core.NewLedgerKey("https://issuer.example", "before"), time.Minute, core.LedgerEntry{}); err != nil {
		t.Fatalf("Consume before rotation: %v", err)
	}

	rot, err := natsauth.Rotate(natsauth.RotateOptions{Dir: s.dir, Role: natsauth.Verifier, UserTTL: time.Hour})
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	fi, err := os.Stat(filepath.Join(s.dir, natsauth.CredsFile(natsauth.Verifier)))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new creds file: %v, mode %v, want 0600", err, fi.Mode())
	}
	ac, err := jwt.DecodeAccountClaims(rot.AccountJWT)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ac.Revocations[rot.RevokedUser]; !ok {
		t.Fatalf("account JWT revocations %v lack the old user %s", ac.Revocations, rot.RevokedUser)
	}
	// What a configuration reload of the new auth.conf does (MEMORY
	// resolver), or a claims update pushed on $SYS.REQ.ACCOUNT.<id>.CLAIMS.UPDATE.
	acc, err := s.srv.LookupAccount(ac.Subject)
	if err != nil {
		t.Fatal(err)
	}
	revokedAt := time.Now()
	s.srv.UpdateAccountClaims(acc, ac)

	// Revoked: consumes and the readiness probe fail as unavailable.
	testwait.Until(t, recoverWait, "revoked verifier's probe fails", func() error {
		if err := led.Probe(t.Context()); err == nil {
			return errors.New("probe still succeeds")
		} else if !errors.Is(err, core.ErrLedgerUnavailable) {
			t.Fatalf("Probe after revocation = %v, want core.ErrLedgerUnavailable", err)
		}
		return nil
	})
	t.Logf("revocation noticed after %v", time.Since(revokedAt))
	err = led.Consume(t.Context(), core.NewLedgerKey("https://issuer.example", "revoked"), time.Minute, core.LedgerEntry{})
	if !errors.Is(err, core.ErrLedgerUnavailable) {
		t.Fatalf("Consume while revoked = %v, want core.ErrLedgerUnavailable", err)
	}
	// nats.go gives up on the second identical auth error unless told
	// not to: stay revoked past that, then check the connection lives.
	testwait.Until(t, recoverWait, "three refused reconnects", func() error {
		if n := refused.n.Load(); n < 3 {
			return fmt.Errorf("%d refused reconnects", n)
		}
		return nil
	})
	if nc.IsClosed() {
		t.Fatal("connection closed for good after the revocation; want it to keep reconnecting")
	}

	// The new credential reaches the node: the same connection recovers.
	replacedAt := time.Now()
	copyFile(t, filepath.Join(s.dir, natsauth.CredsFile(natsauth.Verifier)), nodeCreds)
	testwait.Until(t, recoverWait, "verifier reconnects with the new creds file", func() error {
		return led.Probe(t.Context())
	})
	t.Logf("recovered %v after the creds file was replaced", time.Since(replacedAt))
	if err := led.Consume(t.Context(), core.NewLedgerKey("https://issuer.example", "after"), time.Minute, core.LedgerEntry{}); err != nil {
		t.Fatalf("Consume after new creds: %v", err)
	}

	// The old credential stays refused.
	oldAuth := &natsx.ClientAuth{CredsFile: oldCreds, CAFile: auth.CAFile}
	if errs := oldAuth.Validate(time.Now()); len(errs) > 0 {
		t.Fatal(errs)
	}
	if old, err := natsx.ConnectAuth(t.Context(), s.srv.ClientURL(), "old-verifier", oldAuth, nil); err == nil {
		old.Close()
		t.Fatal("ConnectAuth with the revoked credential = nil error, want refused")
	} else if ce, ok := errors.AsType[*natsx.ConnectError](err); !ok || ce.Kind != natsx.KindAuth {
		t.Fatalf("ConnectAuth with the revoked credential = %v, want a %s ConnectError", err, natsx.KindAuth)
	}
}
