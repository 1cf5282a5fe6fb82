package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/natsauth"
	"github.com/tpcluster/tpcluster/internal/reason"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// TestNATSRevokedRecovers: a running verifierd whose credential is revoked
// (tpnats rotate, nats-server reload) turns unready and denies 503
// replay_ledger_unavailable; once its creds file holds the new credential
// it is ready again and allows, with no restart (the same process).
func TestNATSRevokedRecovers(t *testing.T) {
	l := startLockedNATS(t)
	nodeCreds := filepath.Join(t.TempDir(), "verifier.creds")
	copyCreds := func() {
		t.Helper()
		data, err := os.ReadFile(l.creds(natsauth.Verifier))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(nodeCreds+".tmp", data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(nodeCreds+".tmp", nodeCreds); err != nil {
			t.Fatal(err)
		}
	}
	copyCreds()
	w := newWorld(t)
	up := newUpstream(t)
	n := startVerifierd(t, w, true, "--upstream", up.URL, "--nats-url", l.url(),
		"--nats-creds", nodeCreds, "--nats-ca", l.ca())
	c := &http.Client{Timeout: 30 * time.Second}
	request := func(name string) answer {
		return send(t, c, w.signed(t, "GET", n.URL+"/v1/orders/"+name, "orders.get", nil))
	}
	if a := request("before"); a.status != 200 {
		t.Fatalf("request before the revocation = %d %s, want 200", a.status, a.body)
	}

	if out, err := exec.Command(binary(t, "tpnats"), "rotate", "--dir", l.dir, "--role", "verifier").CombinedOutput(); err != nil {
		t.Fatalf("tpnats rotate: %v\n%s", err, out)
	}
	writeServerConf(t, l.dir)
	reloaded := time.Now()
	if err := syscall.Kill(l.ext.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 60*time.Second, "readyz 503 after the revocation", func() error {
		if a := send(t, c, mustGet(t, n.URL+"/_tp/readyz")); a.status != 503 {
			return fmt.Errorf("readyz = %d %s", a.status, a.body)
		}
		return nil
	})
	t.Logf("unready %v after the reload signal", time.Since(reloaded))
	if a := request("revoked"); a.status != 503 || a.reason() != "replay_ledger_unavailable" {
		t.Fatalf("request while revoked = %d %s, want 503 replay_ledger_unavailable", a.status, a.body)
	}

	replaced := time.Now()
	copyCreds()
	testwait.Until(t, 60*time.Second, "readyz 200 with the new creds file", func() error {
		if a := send(t, c, mustGet(t, n.URL+"/_tp/readyz")); a.status != 200 {
			return fmt.Errorf("readyz = %d %s", a.status, a.body)
		}
		return nil
	})
	t.Logf("ready again %v after the creds file was replaced", time.Since(replaced))
	if a := request("after"); a.status != 200 {
		t.Fatalf("request after the new creds file = %d %s, want 200", a.status, a.body)
	}

	// The denial's audit event, which the node could not publish while
	// revoked, reaches the stream once it is back.
	_, js := l.jetStream(t, natsauth.AuditReader)
	testwait.Until(t, 60*time.Second, "the revoked request's audit event in the stream", func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, audit.DefaultStream)
		if err != nil {
			return err
		}
		m, err := st.GetLastMsgForSubject(ctx, audit.SubjectPrefix+audit.OutcomeDeny+"."+string(reason.ReplayLedgerUnavailable))
		if err != nil {
			return fmt.Errorf("no replay_ledger_unavailable event: %w", err)
		}
		e, err := audit.Decode(m.Data)
		if err != nil {
			return err
		}
		if e.ReasonCode != reason.ReplayLedgerUnavailable {
			return fmt.Errorf("event reason %s", e.ReasonCode)
		}
		return nil
	})
}
