package e2e

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
)

// TestAuditTamperEvident replays the purge-and-forge attack against the real
// binaries: a node signs its trail with --audit-key; tpaudit verify passes
// on the untouched stream, then fails naming the node when its newest
// event is deleted, when a node outside the fleet publishes a chained
// history, and when the stream is purged.
func TestAuditTamperEvident(t *testing.T) {
	ext := natstest.StartExternal(t)
	url := ext.ClientURL()
	js := jsOf(t, url)
	// The stream with deletes and purges allowed, as an attacker with the
	// admin role (or the servers' storage) has them: detection must not
	// rely on the stream's locks. The node finds it and uses it.
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: audit.DefaultStream, Subjects: []string{audit.SubjectPrefix + ">"},
		Storage: jetstream.FileStorage, MaxAge: 30 * 24 * time.Hour, MaxBytes: 10 << 30, Duplicates: audit.DuplicateWindow}); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, "tamper-a")
	up := newUpstream(t)
	n := startVerifierd(t, w, true, "--upstream", up.URL, "--nats-url", url, "--node-id", "tamper-a",
		"--audit-checkpoint-interval", "1s")
	c := &http.Client{Timeout: 30 * time.Second}
	dec := newDecisions()
	get := w.signed(t, "GET", n.URL+"/v1/orders/t1", "orders.get", nil)
	for _, req := range []*http.Request{get, clone(t, get, nil), mustGet(t, n.URL+"/v1/orders/t2")} {
		dec.add(t, send(t, c, req))
	}
	waitDecisions(t, url, "tamper-a", dec.snapshot(), 2)
	n.stop() // its last checkpoint vouches for its newest event
	requireWhole(t, w, url)

	st, err := js.Stream(t.Context(), audit.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}

	// The newest event deleted: no successor's hash covers it, the
	// node's checkpoint does.
	msgs := readAudit(t, url)
	last := msgs[len(msgs)-1]
	if err := st.DeleteMsg(t.Context(), last.seq); err != nil {
		t.Fatal(err)
	}
	code, out := tpauditVerify(t, w, url)
	if code != 1 || !strings.Contains(out, `PROBLEM truncated: node "tamper-a"`) {
		t.Errorf("tpaudit verify after the newest event was deleted = %d, want 1 and truncated naming tamper-a\n%s", code, out)
	}
	t.Logf("tpaudit verify, tamper-a's node_seq %d deleted:\n%s", last.ev.NodeSeq, strings.TrimSpace(out))

	// A node that does not exist: a whole, signed, chained history from a
	// verifierd whose key the fleet does not list.
	rk, err := keyfile.Generate("rogue")
	if err != nil {
		t.Fatal(err)
	}
	rogueKey := filepath.Join(t.TempDir(), "rogue")
	if err := rk.Write(rogueKey); err != nil {
		t.Fatal(err)
	}
	rogue := startVerifierd(t, w, true, "--upstream", up.URL, "--nats-url", url, "--node-id", "rogue-x", "--audit-key", rogueKey+".key")
	waitAudit(t, url, "rogue-x", 0, 2)
	rogue.stop()
	code, out = tpauditVerify(t, w, url)
	if code != 1 || !strings.Contains(out, `PROBLEM unknown_node: node "rogue-x"`) {
		t.Errorf("tpaudit verify with a node outside the fleet = %d, want 1 and unknown_node naming rogue-x\n%s", code, out)
	}
	t.Logf("tpaudit verify with rogue-x:\n%s", strings.TrimSpace(out))

	// The whole stream purged.
	if err := st.Purge(t.Context()); err != nil {
		t.Fatal(err)
	}
	code, out = tpauditVerify(t, w, url)
	if code != 1 || !strings.Contains(out, "PROBLEM purged") || !strings.Contains(out, `PROBLEM checkpoint: node "tamper-a"`) {
		t.Errorf("tpaudit verify of a purged stream = %d, want 1, purged and tamper-a without a checkpoint\n%s", code, out)
	}
	t.Logf("tpaudit verify after a purge:\n%s", strings.TrimSpace(out))
}

// jsOf connects to url for the test's lifetime.
func jsOf(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
