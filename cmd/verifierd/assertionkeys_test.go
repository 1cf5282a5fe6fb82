package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tpcluster/tpcluster/internal/assertion"
	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/testlog"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// writeKey writes a new key NAME.key (and NAME.pub) into dir with mode.
func writeKey(t testing.TB, dir, name string, mode os.FileMode) *keyfile.PrivateKey {
	t.Helper()
	k, err := keyfile.Generate(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Write(filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, name+".key"), mode); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestAssertionKeyDirAtStart: --assertion-key-dir is checked before the
// node starts (main exits 2 on a configure error): a directory with no
// usable key is refused naming the flag and each refused file; one usable
// key is enough, and the rest are named in the log and ignored.
func TestAssertionKeyDirAtStart(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	cfgArgs := func(dir string) []string {
		return []string{"--trust-material", os.DevNull, "--policy-bundle", os.DevNull, "--dev-allow-unsigned-bundles",
			"--assertion-key-dir", dir, "--assertion-issuer", "https://fleet"}
	}
	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, "README"), []byte("keys go here"), 0o644); err != nil {
		t.Fatal(err)
	}
	open := t.TempDir()
	writeKey(t, open, "node-open", 0o644)
	for _, tc := range []struct {
		name, dir string
		want      []string
	}{
		{"empty", empty, []string{"--assertion-key-dir=" + empty + " (TPCLUSTER_ASSERTION_KEY_DIR): no NAME.key file in it"}},
		{"only a too-open key", open, []string{"--assertion-key-dir=" + open, "no usable NAME.key file", "node-open.key: private key file has mode 0644"}},
		{"missing", filepath.Join(empty, "nope"), []string{"--assertion-key-dir=" + filepath.Join(empty, "nope"), "no such file or directory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := configure(cfgArgs(tc.dir), none, io.Discard)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("configure(--assertion-key-dir %s) = %v, want it to contain %q", tc.dir, err, w)
				}
			}
		})
	}

	dir := t.TempDir()
	good := writeKey(t, dir, "node-good", 0o600)
	writeKey(t, dir, "node-open", 0o640)
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a key"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := configure(cfgArgs(dir), none, io.Discard)
	if err != nil {
		t.Fatalf("configure with one good key: %v", err)
	}
	var logs testlog.Buffer
	m, ak, err := readAssertionKeys(cfg, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if m.KID() != good.KID() || len(m.Keys()) != 1 {
		t.Errorf("minter KID %q with %d keys, want %s alone", m.KID(), len(m.Keys()), good.KID())
	}
	if l := logs.String(); !strings.Contains(l, "assertion key file ignored") || !strings.Contains(l, "node-open.key: private key file has mode 0640") || strings.Contains(l, "notes.txt") {
		t.Errorf("log = %s, want the too-open file named and notes.txt not", l)
	}
	// Flag mode (no trust material lists keys): the JWKS is what the
	// directory holds.
	if doc := string(m.JWKSDocument()); !strings.Contains(doc, `"kid":"node-good"`) || strings.Contains(doc, "node-open") {
		t.Errorf("JWKS = %s, want node-good and not the refused node-open", doc)
	}
	// The gauge, as /_tp/metrics exports it.
	reader := sdkmetric.NewManualReader()
	if err := ak.registerMetric(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, mm := range sm.Metrics {
			if g, ok := mm.Data.(metricdata.Gauge[int64]); ok && mm.Name == "tpcluster.assertion.key_files" {
				for _, dp := range g.DataPoints {
					state, _ := dp.Attributes.Value("state")
					got[state.AsString()] = dp.Value
				}
			}
		}
	}
	if got["held"] != 1 || got["refused"] != 1 || len(got) != 2 {
		t.Errorf("tpcluster.assertion.key_files = %v, want held 1, refused 1", got)
	}
}

// TestAssertionKeyDirFlagMode: without assertion_keys in the trust
// material, the JWKS follows the directory across re-reads, and a removed
// key is dropped (nothing lists it active), the first file by name signing.
func TestAssertionKeyDirFlagMode(t *testing.T) {
	dir := t.TempDir()
	writeKey(t, dir, "node-1-b", 0o600)
	m, ak, err := readAssertionKeys(&Config{AssertionKeyDir: dir, AssertionIssuer: "https://fleet"},
		func() []*bundle.AssertionKey { return nil }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	writeKey(t, dir, "node-1-a", 0o600)
	ak.reload("test")
	if doc := string(m.JWKSDocument()); !strings.Contains(doc, `"kid":"node-1-a"`) || !strings.Contains(doc, `"kid":"node-1-b"`) || m.KID() != "node-1-a" {
		t.Errorf("after adding node-1-a: KID %s, JWKS %s; want node-1-a signing, both listed", m.KID(), doc)
	}
	if err := os.Remove(filepath.Join(dir, "node-1-a.key")); err != nil {
		t.Fatal(err)
	}
	ak.reload("test")
	if doc := string(m.JWKSDocument()); strings.Contains(doc, `"kid":"node-1-a"`) || m.KID() != "node-1-b" {
		t.Errorf("after removing node-1-a: KID %s, JWKS %s; want node-1-b alone", m.KID(), doc)
	}
}

// TestAssertionKeyDirReload walks the rotation runbook against the
// directory re-read: a new key dropped in is held after a re-read; the old
// file removed while the trust material still lists it active keeps
// signing from the held copy; once the trust material moves on it is
// dropped; an emptied directory keeps what is held. Run serves Request.
func TestAssertionKeyDirReload(t *testing.T) {
	dir := t.TempDir()
	old := writeKey(t, dir, "node-1-a", 0o600)
	var (
		mu     sync.Mutex
		listed []*bundle.AssertionKey // guarded by mu
	)
	setListed := func(l ...*bundle.AssertionKey) {
		mu.Lock()
		listed = l
		mu.Unlock()
	}
	entry := func(k *keyfile.PrivateKey, s bundle.AssertionKeyStatus) *bundle.AssertionKey {
		return &bundle.AssertionKey{KID: k.KID(), PublicKey: k.Public().Key, Status: s}
	}
	cfg := &Config{AssertionKeyDir: dir, AssertionIssuer: "https://fleet"}
	var logs testlog.Buffer
	m, ak, err := readAssertionKeys(cfg, func() []*bundle.AssertionKey {
		mu.Lock()
		defer mu.Unlock()
		return listed
	}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	setListed(entry(old, bundle.AssertionKeyActive))
	done := make(chan error, 1)
	go func() { done <- ak.Run(t.Context()) }()
	t.Cleanup(func() { <-done }) // Run returns when t.Context() is cancelled

	req := &assertion.Request{Spec: &bundle.BackendAssertion{Audience: "b", TTL: time.Second}}
	signs := func(step, want string) {
		t.Helper()
		got, err := m.Mint(req)
		if err != nil || got.KID != want {
			t.Errorf("%s: Mint kid %q, err %v; want %s", step, got.KID, err, want)
		}
	}
	// reread asks Run for a re-read and waits until the held keys are want.
	reread := func(step, want string) {
		t.Helper()
		ak.Request("test")
		deadline := time.Now().Add(10 * time.Second)
		began := time.Now()
		for {
			var kids []string
			for _, k := range m.Keys() {
				kids = append(kids, k.KID)
			}
			got := strings.Join(kids, ",")
			if got == want {
				t.Logf("%s: held %s after %s", step, got, time.Since(began))
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: held keys %s, want %s; log:\n%s", step, got, want, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	signs("start", "node-1-a")

	// (1) The new key arrives, with a too-open file beside it.
	next := writeKey(t, dir, "node-1-b", 0o600)
	writeKey(t, dir, "node-1-c", 0o604)
	reread("new key dropped in", "node-1-a,node-1-b")
	if l := logs.String(); !strings.Contains(l, "node-1-c.key: private key file has mode 0604") {
		t.Errorf("log = %s, want the too-open node-1-c.key named", l)
	}
	if ak.refusedFiles.Load() != 1 {
		t.Errorf("refused files = %d, want 1", ak.refusedFiles.Load())
	}
	signs("new key held, old active", "node-1-a")

	// (2) Listed next; the old file removed too early: still listed
	// active, so the held copy keeps signing.
	setListed(entry(old, bundle.AssertionKeyActive), entry(next, bundle.AssertionKeyNext))
	if err := os.Remove(filepath.Join(dir, "node-1-a.key")); err != nil {
		t.Fatal(err)
	}
	reread("old file removed while active", "node-1-b,node-1-a")
	signs("old file removed while active", "node-1-a")
	if l := logs.String(); !strings.Contains(l, "signing with the held copy") {
		t.Errorf("log = %s, want the kept key reported", l)
	}

	// (3) The switch: the old key retired, so its held copy is dropped.
	setListed(entry(old, bundle.AssertionKeyRetired), entry(next, bundle.AssertionKeyActive))
	reread("switch", "node-1-b")
	signs("switch", "node-1-b")

	// An emptied directory keeps what is held.
	for _, f := range []string{"node-1-b.key", "node-1-c.key"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	ak.Request("test")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "no usable assertion key in the directory; keeping the keys held") {
		if time.Now().After(deadline) {
			t.Fatalf("emptied dir: no log of it:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	signs("emptied dir", "node-1-b")
}

// TestWatchReload: a SIGHUP delivered to the node asks for a re-read of the
// key directory; without one, it is logged and ignored; watchReload returns
// when its context ends.
func TestWatchReload(t *testing.T) {
	dir := t.TempDir()
	writeKey(t, dir, "node-1-a", 0o600)
	var logs testlog.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	m, ak, err := readAssertionKeys(&Config{AssertionKeyDir: dir, AssertionIssuer: "https://fleet"},
		func() []*bundle.AssertionKey { return nil }, log)
	if err != nil {
		t.Fatal(err)
	}
	hup := make(chan os.Signal, 1)
	for _, n := range []*node{{log: log, reload: hup}, {log: log, keys: ak, reload: hup}} {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- n.watchReload(ctx) }()
		hup <- syscall.SIGHUP
		if n.keys != nil {
			writeKey(t, dir, "node-1-b", 0o600)
			testwait.Until(t, 10*time.Second, "the SIGHUP's re-read request", func() error {
				select {
				case cause := <-ak.kick:
					if cause != "sighup" {
						return fmt.Errorf("cause %q", cause)
					}
					ak.reload(cause)
					return nil
				default:
					return errors.New("none yet")
				}
			})
			if len(m.Keys()) != 2 {
				t.Errorf("after SIGHUP: %d keys held, want 2", len(m.Keys()))
			}
		} else {
			testwait.Until(t, 10*time.Second, "the SIGHUP logged", func() error {
				if !strings.Contains(logs.String(), "nothing to re-read") {
					return errors.New("not logged yet")
				}
				return nil
			})
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watchReload = %v, want nil at the end of its context", err)
		}
	}
}
