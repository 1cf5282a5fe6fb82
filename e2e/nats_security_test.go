package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/natsauth"
	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// lockedNATS is an external nats-server running a `tpnats init` set
// (TLS, one user per role) with the streams made by `tpnats setup`.
type lockedNATS struct {
	ext *natstest.External
	dir string
}

func startLockedNATS(t *testing.T) *lockedNATS {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "nats")
	if out, err := exec.Command(binary(t, "tpnats"), "init", "--dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("tpnats init: %v\n%s", err, out)
	}
	confFile := writeServerConf(t, dir)
	l := &lockedNATS{ext: natstest.StartExternal(t, "-c", confFile), dir: dir}
	testwait.Until(t, 30*time.Second, "tpnats setup as admin", func() error {
		out, err := exec.Command(binary(t, "tpnats"), "setup", "--nats-url", l.url(),
			"--nats-creds", l.creds(natsauth.Admin), "--nats-ca", l.ca(), "--timeout", "5s").CombinedOutput()
		if err != nil {
			return errors.New(string(out))
		}
		return nil
	})
	return l
}

// writeServerConf writes dir/server.conf from the set's auth.conf and
// tls.conf (again after tpnats rotate, before a reload) and returns its path.
func writeServerConf(t *testing.T, dir string) string {
	t.Helper()
	var conf []byte
	for _, f := range []string{natsauth.AuthConfFile, natsauth.TLSConfFile} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		conf = append(append(conf, b...), '\n')
	}
	confFile := filepath.Join(dir, "server.conf")
	if err := os.WriteFile(confFile, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	return confFile
}

func (l *lockedNATS) url() string { return l.ext.ClientURL() }
func (l *lockedNATS) ca() string  { return filepath.Join(l.dir, natsauth.CAFile) }
func (l *lockedNATS) creds(r natsauth.Role) string {
	return filepath.Join(l.dir, natsauth.CredsFile(r))
}

// connect connects as role ("" for no credential).
func (l *lockedNATS) connect(t *testing.T, role natsauth.Role) (*nats.Conn, error) {
	t.Helper()
	a := &natsx.ClientAuth{CAFile: l.ca()}
	if role != "" {
		a.CredsFile = l.creds(role)
	}
	if errs := a.Validate(time.Now()); len(errs) > 0 {
		t.Fatal(errs)
	}
	return natsx.ConnectAuth(t.Context(), l.url(), "e2e-"+string(role), a, nil)
}

// jetStream connects as role and gives the connection and its JetStream
// context; the connection is closed when the test ends.
func (l *lockedNATS) jetStream(t *testing.T, role natsauth.Role) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := l.connect(t, role)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// TestNATSLockedReplay replays issue 12's attacks against a real verifierd
// on a locked NATS server: without a credential nothing connects; with the
// verifier's credential the consumed key can be neither purged, rolled up
// nor replaced, and the replay is denied jti_replay; with the stream deleted
// (only admin can) and fake PubAcks answering on its subjects, the replay
// is denied replay_ledger_unavailable, and readyz turns 503.
func TestNATSLockedReplay(t *testing.T) {
	l := startLockedNATS(t)
	w := newWorld(t)
	up := newUpstream(t)
	n := startVerifierd(t, w, true, "--upstream", up.URL, "--nats-url", l.url(),
		"--nats-creds", l.creds(natsauth.Verifier), "--nats-ca", l.ca())
	c := &http.Client{Timeout: 30 * time.Second}

	req := w.signed(t, "GET", n.URL+"/v1/orders/locked", "orders.get", nil)
	if a := send(t, c, clone(t, req, nil)); a.status != 200 {
		t.Fatalf("first request = %d %s, want 200", a.status, a.body)
	}

	// 1. Network reach alone.
	if nc, err := l.connect(t, ""); err == nil {
		nc.Close()
		t.Fatal("connect without a credential = nil error")
	} else {
		t.Logf("no credential: %v", err)
	}

	// 2. The verifier's credential against the consumed key.
	_, js := l.jetStream(t, natsauth.Verifier)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	const ledgerStream = "KV_TRUSTPLANE_REPLAY"
	if err := js.DeleteStream(ctx, ledgerStream); err == nil {
		t.Error("delete the ledger stream as verifier = nil error")
	}
	if _, err := js.PublishMsg(t.Context(), &nats.Msg{Subject: "$KV.TRUSTPLANE_REPLAY.x", Header: nats.Header{"Nats-Rollup": {"all"}}}); err == nil {
		t.Error("roll up the ledger as verifier = nil error")
	}
	if a := send(t, c, clone(t, req, nil)); a.status != 409 || a.reason() != "jti_replay" {
		t.Fatalf("replay after the verifier's attempts = %d %s, want 409 jti_replay", a.status, a.body)
	}

	// 3. Admin (the only role that can) deletes the ledger stream and
	// answers its subjects with PubAcks naming it.
	anc, ajs := l.jetStream(t, natsauth.Admin)
	if err := ajs.DeleteStream(t.Context(), ledgerStream); err != nil {
		t.Fatal(err)
	}
	if _, err := anc.Subscribe("$KV.TRUSTPLANE_REPLAY.>", func(m *nats.Msg) {
		m.Respond([]byte(`{"stream":"KV_TRUSTPLANE_REPLAY","seq":1}`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := anc.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if a := send(t, c, clone(t, req, nil)); a.status != 503 || a.reason() != "replay_ledger_unavailable" {
			t.Fatalf("replay %d with fake PubAcks = %d %s, want 503 replay_ledger_unavailable", i+1, a.status, a.body)
		}
	}
	a := send(t, c, mustGet(t, n.URL+"/_tp/readyz"))
	if a.status != 503 || !strings.Contains(string(a.body), "ledger") {
		t.Errorf("readyz with the ledger stream gone = %d %s, want 503 naming the ledger", a.status, a.body)
	}
	t.Logf("readyz with the ledger stream gone: %d %s", a.status, a.body)
}

// TestNATSLockedBundleBucket: with bundles over a locked NATS, bundlepub
// publishes as its role and the node decides; when the bundle bucket is
// deleted (only admin can), readyz turns 503 naming bundle_bucket (issue 12
// found it stayed 200), and neither the node nor bundlepub recreates it.
func TestNATSLockedBundleBucket(t *testing.T) {
	l := startLockedNATS(t)
	// bundlepub reads its role from the environment, verifierd from flags.
	t.Setenv("TPCLUSTER_NATS_CREDS", l.creds(natsauth.Bundlepub))
	t.Setenv("TPCLUSTER_NATS_CA", l.ca())
	c := newChannel(t, l.url(), nil)
	c.startPublisher(t, 500*time.Millisecond)
	n := c.startKVNode(t, "locked-kv", "", true, "--nats-creds", l.creds(natsauth.Verifier), "--nats-ca", l.ca())
	hc := &http.Client{Timeout: 30 * time.Second}
	if a := send(t, hc, c.signed(t, "GET", n.URL+"/v1/orders/kv", "orders.get", nil)); a.status != 200 {
		t.Fatalf("request with bundles from the locked bucket = %d %s, want 200", a.status, a.body)
	}

	_, ajs := l.jetStream(t, natsauth.Admin)
	if err := ajs.DeleteKeyValue(t.Context(), "TRUSTPLANE_BUNDLES"); err != nil {
		t.Fatal(err)
	}
	var body string
	took := testwait.Until(t, 30*time.Second, "readyz 503 naming bundle_bucket", func() error {
		a := send(t, hc, mustGet(t, n.URL+"/_tp/readyz"))
		body = string(a.body)
		if a.status != 503 || !strings.Contains(body, `"name":"bundle_bucket"`) {
			return fmt.Errorf("readyz %d %s", a.status, a.body)
		}
		return nil
	})
	t.Logf("bundle bucket deleted: readyz 503 after %s: %s", took.Round(time.Millisecond), body)
	// Give the node's watcher and bundlepub's beacon loop time to try.
	time.Sleep(3 * time.Second)
	if _, err := ajs.Stream(t.Context(), "KV_TRUSTPLANE_BUNDLES"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("bundle bucket after its deletion: lookup = %v, want not found (recreated by a role?)", err)
	}
}

// TestVerifierdNATSConfigExit2: the real binary exits 2 before listening on
// a NATS credential it cannot use: expired or readable by others (found at
// start, naming flag and file), or refused by the server (naming the URL).
func TestVerifierdNATSConfigExit2(t *testing.T) {
	l := startLockedNATS(t)
	w := newWorld(t)
	expired := filepath.Join(t.TempDir(), "expired")
	if err := natsauth.Generate(natsauth.Options{Dir: expired, UserTTL: time.Hour, Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }}); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	if err := natsauth.Generate(natsauth.Options{Dir: other}); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(t.TempDir(), "open.creds")
	data, err := os.ReadFile(l.creds(natsauth.Verifier))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(open, data, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, creds string
		want        []string
	}{
		{"expired", filepath.Join(expired, natsauth.CredsFile(natsauth.Verifier)), []string{"--nats-creds=", "expired"}},
		{"mode 0644", open, []string{"--nats-creds=" + open, "mode 0644"}},
		{"another operator", filepath.Join(other, natsauth.CredsFile(natsauth.Verifier)), []string{l.url(), "auth", "Authorization Violation"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary(t, "verifierd"), "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(),
				"--nats-url", l.url(), "--nats-creds", tt.creds, "--nats-ca", l.ca(),
				"--trust-material", w.trust, "--policy-bundle", w.policy, "--bundle-public-key", w.bundlePub)
			out, err := cmd.CombinedOutput()
			ee, ok := errors.AsType[*exec.ExitError](err)
			if !ok || ee.ExitCode() != 2 {
				t.Fatalf("verifierd = %v, want exit 2\n%s", err, out)
			}
			for _, want := range tt.want {
				if !strings.Contains(string(out), want) {
					t.Errorf("verifierd output lacks %q:\n%s", want, out)
				}
			}
			if strings.Contains(string(out), "verifierd listening") {
				t.Errorf("verifierd listened before exiting:\n%s", out)
			}
		})
	}
}
