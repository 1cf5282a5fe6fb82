package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/natsauth"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/reason"
	"github.com/tpcluster/tpcluster/internal/testport"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// decided is one answer a test got, by request id.
type decided struct {
	status int
	reason string // "allowed" for a 200
}

// ledgerOf collects the decisions a test made, safe for concurrent use.
type ledgerOf struct {
	mu sync.Mutex
	m  map[string]decided
}

func newDecisions() *ledgerOf { return &ledgerOf{m: map[string]decided{}} }

// add records a's decision under its X-Request-Id and returns it.
func (l *ledgerOf) add(t testing.TB, a answer) decided {
	t.Helper()
	id := a.header.Get("X-Request-Id")
	if id == "" {
		t.Fatalf("answer %d without X-Request-Id", a.status)
	}
	d := decided{a.status, a.reason()}
	if a.status == 200 {
		d.reason = "allowed"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, dup := l.m[id]; dup {
		t.Fatalf("request id %s answered twice", id)
	}
	l.m[id] = d
	return d
}

func (l *ledgerOf) snapshot() map[string]decided {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]decided, len(l.m))
	maps.Copy(out, l.m)
	return out
}

// auditMsg is one stored audit message.
type auditMsg struct {
	seq     uint64
	subject string
	msgID   string
	data    []byte
	sig     string // the node's signature header
	ev      *audit.Event
}

// embeddedCreds maps the URL of a verifierd's embedded NATS server to the
// credentials it wrote into <data-dir>/nats-auth: that server refuses
// clients without one (issue 12). External test servers have none.
var embeddedCreds sync.Map

// useEmbeddedCreds registers dataDir's credentials for url until the test ends.
func useEmbeddedCreds(t testing.TB, url, dataDir string) {
	embeddedCreds.Store(url, filepath.Join(dataDir, "nats-auth"))
	t.Cleanup(func() { embeddedCreds.Delete(url) })
}

// credsFile is role's creds file for url, or "".
func credsFile(url string, role natsauth.Role) string {
	dir, ok := embeddedCreds.Load(url)
	if !ok {
		return ""
	}
	return filepath.Join(dir.(string), natsauth.CredsFile(role))
}

// connectAs connects the test to url as role (if the server wants one).
func connectAs(t testing.TB, url string, role natsauth.Role) *nats.Conn {
	t.Helper()
	nc, err := dialAs(url, role)
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

// dialAs is connectAs returning its error.
func dialAs(url string, role natsauth.Role) (*nats.Conn, error) {
	opts := []nats.Option{nats.Timeout(5 * time.Second)}
	if f := credsFile(url, role); f != "" {
		opts = append(opts, nats.UserCredentials(f))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", url, err)
	}
	return nc, nil
}

// readAudit reads the whole audit stream from the NATS server at url.
func readAudit(t testing.TB, url string) []auditMsg {
	t.Helper()
	msgs, err := readAuditErr(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// readAuditErr is readAudit returning its error, for callers that poll a
// cluster whose stream may be moving its leader. It reads as the
// audit-reader role where the server wants a credential.
func readAuditErr(ctx context.Context, url string) ([]auditMsg, error) {
	nc, err := dialAs(url, natsauth.AuditReader)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, audit.DefaultStream)
	if err != nil {
		return nil, fmt.Errorf("audit stream: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []auditMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted (a tampering test)
		}
		if err != nil {
			return nil, fmt.Errorf("audit stream seq %d: %w", seq, err)
		}
		if audit.IsCheckpointSubject(m.Subject) {
			continue // a node's checkpoint, not an event
		}
		e, err := audit.Decode(m.Data)
		if err != nil {
			return nil, fmt.Errorf("audit stream seq %d: %w", seq, err)
		}
		out = append(out, auditMsg{seq, m.Subject, m.Header.Get(jetstream.MsgIDHeader), m.Data, m.Header.Get(audit.SignatureHeader), e})
	}
	return out, nil
}

// waitAudit waits until the stream holds want request events plus bundles
// bundle events of node, and returns the stream.
func waitAudit(t testing.TB, url, node string, want, bundles int) []auditMsg {
	t.Helper()
	var msgs []auditMsg
	testwait.Until(t, 90*time.Second, "audit events in the stream", func() error {
		msgs = readAudit(t, url)
		var req, bun int
		for _, m := range msgs {
			switch {
			case m.ev.NodeID != node:
			case m.ev.Outcome == audit.OutcomeBundle:
				bun++
			default:
				req++
			}
		}
		if req < want || bun < bundles {
			return fmt.Errorf("%d request and %d bundle events of %s, want %d and %d", req, bun, node, want, bundles)
		}
		return nil
	})
	return msgs
}

// waitDecisions waits until the stream holds an event of node for every
// decision in dec that was recorded (all but audit_unavailable, which may
// or may not be), plus bundles bundle events, and returns the stream.
// Counting is not enough where some denials may be stored: they could make
// up the count while a decision's event is still on its way.
func waitDecisions(t testing.TB, url, node string, dec map[string]decided, bundles int) []auditMsg {
	t.Helper()
	var msgs []auditMsg
	testwait.Until(t, 90*time.Second, "every recorded decision in the stream", func() error {
		msgs = readAudit(t, url)
		have := map[string]bool{}
		var bun int
		for _, m := range msgs {
			if m.ev.NodeID != node {
				continue
			}
			if m.ev.Outcome == audit.OutcomeBundle {
				bun++
			}
			have[m.ev.RequestID] = true
		}
		for id, d := range dec {
			if d.reason != string(reason.AuditUnavailable) && !have[id] {
				return fmt.Errorf("request %s (%s) not in the stream yet", id, d.reason)
			}
		}
		if bun < bundles {
			return fmt.Errorf("%d bundle events, want %d", bun, bundles)
		}
		return nil
	})
	return msgs
}

// checkAudit: every decision in dec appears exactly once among node's
// events, with its reason code on the right subject; node's events are
// node_seq 1..n in stream order, each stored once; bundles bundle events.
func checkAudit(t testing.TB, msgs []auditMsg, node string, dec map[string]decided, bundles int) {
	t.Helper()
	seen := map[string]int{}
	var last uint64
	var requests, bun int
	for _, m := range msgs {
		e := m.ev
		if e.NodeID != node {
			continue
		}
		if e.NodeSeq != last+1 {
			t.Errorf("node %s: node_seq %d after %d (stream seq %d)", node, e.NodeSeq, last, m.seq)
		}
		last = e.NodeSeq
		if m.msgID != e.EventID {
			t.Errorf("stream seq %d: Nats-Msg-Id %q, event_id %q", m.seq, m.msgID, e.EventID)
		}
		if want := "trustplane.audit." + e.Outcome + "." + string(e.ReasonCode); m.subject != want {
			t.Errorf("stream seq %d: subject %q, want %q", m.seq, m.subject, want)
		}
		if e.Outcome == audit.OutcomeBundle {
			bun++
			continue
		}
		requests++
		seen[e.RequestID]++
		d, ok := dec[e.RequestID]
		if !ok {
			t.Errorf("stream seq %d: event for request %s that the test never got an answer for", m.seq, e.RequestID)
			continue
		}
		if string(e.ReasonCode) != d.reason || e.Status != d.status || e.Accepted != (d.status == 200) {
			t.Errorf("request %s: event says %s %d accepted=%v, the answer was %s %d", e.RequestID, e.ReasonCode, e.Status, e.Accepted, d.reason, d.status)
		}
	}
	for id, d := range dec {
		if d.reason == "audit_unavailable" {
			// Denied at step 18a with a little room left, it is
			// recorded; with none, it is counted as unrecordable.
			if seen[id] > 1 {
				t.Errorf("request %s (audit_unavailable): %d events", id, seen[id])
			}
			continue
		}
		if seen[id] != 1 {
			t.Errorf("request %s (%s): %d events in the stream, want exactly 1", id, d.reason, seen[id])
		}
	}
	if bun != bundles {
		t.Errorf("node %s: %d bundle events, want %d", node, bun, bundles)
	}
	t.Logf("audit: node %s: %d request events and %d bundle events, node_seq 1..%d, each once, in order", node, requests, bun, last)
}

// tpauditVerify runs the real tpaudit verify against url, with w's trust
// material as the fleet, as the audit-reader role on the audit stream and
// as admin on the test's copies (when the server wants a credential).
func tpauditVerify(t testing.TB, w *world, url string, args ...string) (int, string) {
	t.Helper()
	role := natsauth.AuditReader
	if slices.Contains(args, "--stream") {
		role = natsauth.Admin
	}
	if f := credsFile(url, role); f != "" {
		args = append(args, "--nats-creds", f)
	}
	args = append([]string{"verify", "--nats-url", url, "--trust-material", w.trust, "--bundle-public-key", w.bundlePub}, args...)
	code, out, errs := runBinary(t, "tpaudit", args...)
	return code, out + errs
}

func requireWhole(t testing.TB, w *world, url string) {
	t.Helper()
	if code, out := tpauditVerify(t, w, url); code != 0 || !strings.Contains(out, "every chain whole") {
		t.Errorf("tpaudit verify = %d\n%s", code, out)
	} else {
		t.Logf("tpaudit verify:\n%s", strings.TrimSpace(out))
	}
}

// TestAuditEveryDecision: a node with embedded NATS makes one decision of
// each common kind; each appears in TRUSTPLANE_AUDIT exactly once with its
// reason code and subject, and tpaudit verify finds the chain whole. After a
// clean restart the chain continues.
func TestAuditEveryDecision(t *testing.T) {
	w := newWorld(t, "audit-a")
	up := newUpstream(t)
	natsAddr := testport.Addrs(t, 1)[0]
	dataDir := t.TempDir()
	args := []string{"--upstream", up.URL, "--nats-listen", natsAddr, "--data-dir", dataDir, "--node-id", "audit-a"}
	n := startVerifierd(t, w, true, args...)
	url := "nats://" + natsAddr
	useEmbeddedCreds(t, url, dataDir)
	c := &http.Client{Timeout: 30 * time.Second}
	dec := newDecisions()

	exercise := func(n *node, tag string) {
		t.Helper()
		get := w.signed(t, "GET", n.URL+"/v1/orders/"+tag, "orders.get", nil)
		cases := []struct {
			name string
			req  *http.Request
			want string
		}{
			{"allow", get, "allowed"},
			{"replay", clone(t, get, nil), "jti_replay"},
			{"no passport", mustGet(t, n.URL+"/v1/orders/"+tag), "passport_missing"},
			{"no route", w.signed(t, "GET", n.URL+"/v2/unknown", "orders.get", nil), "bundle_route_missing"},
			{"dot segment", mustGet(t, n.URL+"/v1//orders"), "request_path_noncanonical"},
		}
		body := []byte(`{"order_id":"` + tag + `"}`)
		post := w.signed(t, "POST", n.URL+"/v1/orders", "orders.create", body, "Content-Type", "application/json")
		post.Body, post.ContentLength = nopBody([]byte(`{"order_id":"forged"}`)), int64(len(`{"order_id":"forged"}`))
		cases = append(cases, struct {
			name string
			req  *http.Request
			want string
		}{"altered body", post, "request_binding_mismatch"})
		bad := w.signed(t, "GET", n.URL+"/v1/orders/"+tag+"-p", "orders.get", nil)
		bad.Header.Set("X-TrustPlane-Proof", strings.Repeat("A", 86))
		cases = append(cases, struct {
			name string
			req  *http.Request
			want string
		}{"bad proof", bad, "invalid_request_proof"})
		for _, tc := range cases {
			if d := dec.add(t, send(t, c, tc.req)); d.reason != tc.want {
				t.Errorf("%s: %d %s, want %s", tc.name, d.status, d.reason, tc.want)
			}
		}
	}
	exercise(n, "first")
	msgs := waitAudit(t, url, "audit-a", len(dec.snapshot()), 2)
	checkAudit(t, msgs, "audit-a", dec.snapshot(), 2)
	requireWhole(t, w, url)

	// Tampered copies of the stream (what someone with write access to
	// the storage could make): tpaudit verify finds the deletion and the
	// alteration.
	tamperCopy(t, url, "DELETED", func(i int, m auditMsg) []byte {
		if i == 3 {
			return nil
		}
		return m.data
	})
	if code, out := tpauditVerify(t, w, url, "--stream", "DELETED"); code != 1 || !strings.Contains(out, "PROBLEM gap") {
		t.Errorf("tpaudit verify of a copy with a deleted event = %d, want 1 and a gap\n%s", code, out)
	} else {
		t.Logf("tpaudit verify --stream DELETED (event 4 deleted):\n%s", strings.TrimSpace(out))
	}
	tamperCopy(t, url, "ALTERED", func(i int, m auditMsg) []byte {
		if m.ev.ReasonCode == reason.Allowed {
			// Rewrite who was allowed, keeping the JSON valid.
			return bytes.Replace(m.data, []byte(`"subject":"`+wSubject+`"`), []byte(`"subject":"spiffe://e2e.local/workload/someone-else"`), 1)
		}
		return m.data
	})
	if code, out := tpauditVerify(t, w, url, "--stream", "ALTERED"); code != 1 || !strings.Contains(out, "PROBLEM altered") {
		t.Errorf("tpaudit verify of a copy with an altered event = %d, want 1 and altered\n%s", code, out)
	} else {
		t.Logf("tpaudit verify --stream ALTERED (the allow's subject rewritten):\n%s", strings.TrimSpace(out))
	}

	// A clean restart: the chain continues at the next node_seq.
	n.stop()
	n = startVerifierd(t, w, true, args...)
	exercise(n, "second")
	msgs = waitAudit(t, url, "audit-a", len(dec.snapshot()), 4)
	checkAudit(t, msgs, "audit-a", dec.snapshot(), 4)
	requireWhole(t, w, url)
}

func nopBody(b []byte) *readCloser { return &readCloser{bytes.NewReader(b)} }

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// tamperCopy copies the audit stream at url into a new stream name (subjects
// <name>.audit.>), message by message through edit (nil drops one).
func tamperCopy(t testing.TB, url, name string, edit func(i int, m auditMsg) []byte) {
	t.Helper()
	msgs := readAudit(t, url)
	nc := connectAs(t, url, natsauth.Admin) // creates streams
	defer nc.Close()
	js := natstest.JetStream(t, nc)
	prefix := strings.ToLower(name)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: name, Subjects: []string{prefix + ".audit.>"}}); err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		data := edit(i, m)
		if data == nil {
			continue
		}
		// The node's signature goes along, as a copier would take it.
		msg := &nats.Msg{Subject: prefix + "." + strings.TrimPrefix(m.subject, "trustplane."), Data: data,
			Header: nats.Header{audit.SignatureHeader: []string{m.sig}}}
		if _, err := js.PublishMsg(t.Context(), msg); err != nil {
			t.Fatal(err)
		}
	}
}
