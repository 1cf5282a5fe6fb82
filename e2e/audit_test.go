package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
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
	for k, v := range l.m {
		out[k] = v
	}
	return out
}

// auditMsg is one stored audit message.
type auditMsg struct {
	seq     uint64
	subject string
	msgID   string
	data    []byte
	ev      *audit.Event
}

// readAudit reads the whole audit stream from the NATS server at url.
func readAudit(t testing.TB, url string) []auditMsg {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, audit.DefaultStream)
	if err != nil {
		t.Fatalf("audit stream: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []auditMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("audit stream seq %d: %v", seq, err)
		}
		e, err := audit.Decode(m.Data)
		if err != nil {
			t.Fatalf("audit stream seq %d: %v", seq, err)
		}
		out = append(out, auditMsg{seq, m.Subject, m.Header.Get(jetstream.MsgIDHeader), m.Data, e})
	}
	return out
}

// waitAudit waits until the stream holds want request events plus bundles
// bundle events of node, and returns the stream.
func waitAudit(t testing.TB, url, node string, want, bundles int) []auditMsg {
	t.Helper()
	var msgs []auditMsg
	waitFor(t, 90*time.Second, "audit events in the stream", func() error {
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

// tpauditVerify runs the real tpaudit verify against url.
func tpauditVerify(t testing.TB, url string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary(t, "tpaudit"), append([]string{"verify", "--nats-url", url}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, out.String()
}

func requireWhole(t testing.TB, url string) {
	t.Helper()
	if code, out := tpauditVerify(t, url); code != 0 || !strings.Contains(out, "every chain whole") {
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
	w := newWorld(t)
	up := newUpstream(t)
	natsAddr := freeAddr(t)
	dataDir := t.TempDir()
	args := []string{"--upstream", up.URL, "--nats-listen", natsAddr, "--data-dir", dataDir, "--node-id", "audit-a"}
	n := startVerifierd(t, w, true, args...)
	url := "nats://" + natsAddr
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
	requireWhole(t, url)

	// A clean restart: the chain continues at the next node_seq.
	n.stop()
	n = startVerifierd(t, w, true, args...)
	exercise(n, "second")
	msgs = waitAudit(t, url, "audit-a", len(dec.snapshot()), 4)
	checkAudit(t, msgs, "audit-a", dec.snapshot(), 4)
	requireWhole(t, url)
}

func nopBody(b []byte) *readCloser { return &readCloser{bytes.NewReader(b)} }

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// signedGet sends a fresh signed GET and records the answer.
func signedGet(t testing.TB, w *world, c *http.Client, n *node, dec *ledgerOf, tag string) decided {
	t.Helper()
	return dec.add(t, send(t, c, w.signed(t, "GET", n.URL+"/v1/orders/"+tag, "orders.get", nil)))
}

// outageRun drives one node through a NATS outage: allowed before,
// replay_ledger_unavailable during (count requests, concurrently), allowed
// after. It returns once an allow came back.
func outageRun(t *testing.T, w *world, ext *natstest.External, n *node, dec *ledgerOf, count int, tag string) {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	for i := range 5 {
		if d := signedGet(t, w, c, n, dec, fmt.Sprintf("%s-before-%d", tag, i)); d.status != 200 {
			t.Fatalf("before the outage: %d %s", d.status, d.reason)
		}
	}
	ext.Stop()
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range jobs {
				d := signedGet(t, w, c, n, dec, fmt.Sprintf("%s-during-%d", tag, i))
				if d.status != 503 || d.reason != "replay_ledger_unavailable" {
					t.Errorf("during the outage: %d %s, want 503 replay_ledger_unavailable", d.status, d.reason)
				}
			}
		})
	}
	for i := range count {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	ext.Start()
	i := 0
	waitFor(t, 60*time.Second, "an allow after the NATS restart", func() error {
		i++
		if d := signedGet(t, w, c, n, dec, fmt.Sprintf("%s-after-%d", tag, i)); d.status != 200 {
			return fmt.Errorf("%d %s", d.status, d.reason)
		}
		return nil
	})
	for i := range 5 {
		if d := signedGet(t, w, c, n, dec, fmt.Sprintf("%s-after-more-%d", tag, i)); d.status != 200 {
			t.Errorf("after the outage: %d %s", d.status, d.reason)
		}
	}
}

// TestAuditOutage: signed requests before, during and after a NATS outage
// (an external nats-server, stopped and started): every decision reaches
// the stream once, in node order, and the chain is whole.
func TestAuditOutage(t *testing.T) {
	ext := natstest.StartExternal(t)
	w := newWorld(t)
	up := newUpstream(t)
	n := startVerifierd(t, w, true, "--upstream", up.URL, "--nats-url", ext.ClientURL(), "--node-id", "outage-a")
	dec := newDecisions()
	outageRun(t, w, ext, n, dec, 50, "o")
	all := dec.snapshot()
	msgs := waitAudit(t, ext.ClientURL(), "outage-a", len(all), 2)
	checkAudit(t, msgs, "outage-a", all, 2)
	if len(msgs) != len(all)+2 {
		t.Errorf("stream holds %d messages, want %d (decisions + 2 bundle events)", len(msgs), len(all)+2)
	}
	requireWhole(t, ext.ClientURL())
}

// TestAuditKillDuringDrain: as TestAuditOutage, with a backlog large enough
// to drain slowly (one publish in flight at a time), and verifierd killed
// with SIGKILL while the backlog drains. After a restart on the same spool
// every event is stored once: none lost, none twice.
func TestAuditKillDuringDrain(t *testing.T) {
	ext := natstest.StartExternal(t)
	w := newWorld(t)
	up := newUpstream(t)
	dataDir := t.TempDir()
	args := []string{"--upstream", up.URL, "--nats-url", ext.ClientURL(), "--node-id", "kill-a",
		"--data-dir", dataDir, "--audit-publish-window", "1"}
	n := startVerifierd(t, w, true, args...)
	dec := newDecisions()
	const backlog = 3000
	outageRun(t, w, ext, n, dec, backlog, "k")

	// Kill while the stream holds part of the backlog.
	nc, err := nats.Connect(ext.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var stored uint64
	waitFor(t, 60*time.Second, "the backlog to start draining", func() error {
		info, err := js.Stream(t.Context(), audit.DefaultStream)
		if err != nil {
			return err
		}
		stored = info.CachedInfo().State.Msgs
		if stored < 200 {
			return fmt.Errorf("%d events stored", stored)
		}
		return nil
	})
	if err := n.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-n.exited
	total := uint64(len(dec.snapshot()) + 2)
	st, _ := js.Stream(t.Context(), audit.DefaultStream)
	atKill := st.CachedInfo().State.Msgs
	t.Logf("kill -9 with %d of %d events stored (%d seen just before the kill)", atKill, total, stored)
	if atKill >= total {
		t.Fatalf("the spool had drained before the kill (%d of %d stored): the test proves nothing; make the backlog larger", atKill, total)
	}

	n = startVerifierd(t, w, true, args[:len(args)-2]...) // default window after the restart
	c := &http.Client{Timeout: 30 * time.Second}
	for i := range 3 {
		if d := signedGet(t, w, c, n, dec, fmt.Sprintf("k-restarted-%d", i)); d.status != 200 {
			t.Errorf("after the restart: %d %s", d.status, d.reason)
		}
	}
	all := dec.snapshot()
	msgs := waitAudit(t, ext.ClientURL(), "kill-a", len(all), 4)
	checkAudit(t, msgs, "kill-a", all, 4)
	if len(msgs) != len(all)+4 {
		t.Errorf("stream holds %d messages, want %d (decisions + 4 bundle events): something stored twice or lost", len(msgs), len(all)+4)
	}
	// Events stored before the kill but not yet marked in the spool's
	// cursor were sent again; the duplicate window acknowledged them
	// without storing them.
	t.Logf("after the restart: %v resent events acknowledged as duplicates",
		metric(t, n, "tpcluster_audit_events_published_total", `duplicate="true"`))
	requireWhole(t, ext.ClientURL())
}

// TestAuditSpoolFull: a node with a small spool loses NATS: decisions fill
// the spool, then every request is denied audit_unavailable (counted as
// unrecordable), never allowed. When NATS returns the spool drains, allows
// resume, and every answer other than audit_unavailable has its event.
func TestAuditSpoolFull(t *testing.T) {
	ext := natstest.StartExternal(t)
	w := newWorld(t)
	up := newUpstream(t)
	n := startVerifierd(t, w, true, "--upstream", up.URL, "--nats-url", ext.ClientURL(), "--node-id", "full-a",
		"--audit-spool-max-bytes", "65536")
	c := &http.Client{Timeout: 30 * time.Second}
	dec := newDecisions()
	if d := signedGet(t, w, c, n, dec, "before"); d.status != 200 {
		t.Fatalf("before: %d %s", d.status, d.reason)
	}
	ext.Stop()
	var ledgerDown, full int
	for i := 0; full < 20; i++ {
		if i > 2000 {
			t.Fatal("the spool never filled")
		}
		switch d := signedGet(t, w, c, n, dec, fmt.Sprintf("full-%d", i)); {
		case d.status == 503 && d.reason == "replay_ledger_unavailable":
			if full > 0 {
				t.Errorf("request %d recorded after the spool was full", i)
			}
			ledgerDown++
		case d.status == 503 && d.reason == "audit_unavailable":
			full++
		default:
			t.Fatalf("request %d with NATS down: %d %s", i, d.status, d.reason)
		}
	}
	// Unsigned requests are denied audit_unavailable too, whatever their own reason.
	if a := send(t, c, mustGet(t, n.URL+"/v1/orders/x")); a.status != 503 || a.reason() != "audit_unavailable" {
		t.Errorf("no passport, spool full: %d %s, want 503 audit_unavailable", a.status, a.reason())
	} else {
		dec.add(t, a)
		full++
	}
	unrecordable := metric(t, n, "tpcluster_audit_events_unrecordable_total", "")
	if unrecordable < 1 {
		t.Errorf("tpcluster_audit_events_unrecordable_total = %v, want some", unrecordable)
	}

	ext.Start()
	waitFor(t, 60*time.Second, "an allow after the spool drained", func() error {
		if d := signedGet(t, w, c, n, dec, "after-"+time.Now().Format("150405.000000")); d.status != 200 {
			return fmt.Errorf("%d %s", d.status, d.reason)
		}
		return nil
	})
	all := dec.snapshot()
	var recorded int
	for _, d := range all {
		if d.reason != "audit_unavailable" {
			recorded++
		}
	}
	msgs := waitAudit(t, ext.ClientURL(), "full-a", recorded, 2)
	checkAudit(t, msgs, "full-a", all, 2)
	// Each audit_unavailable denial is either in the stream (recorded
	// while a little room was left) or counted as unrecordable: none is
	// lost quietly.
	var stored int
	for _, m := range msgs {
		if m.ev.ReasonCode == "audit_unavailable" {
			stored++
		}
	}
	if stored+int(unrecordable) != full {
		t.Errorf("audit_unavailable: %d stored + %v counted unrecordable, want %d denials", stored, unrecordable, full)
	}
	t.Logf("spool full: %d decisions recorded with NATS down, then %d denied audit_unavailable: %d of them recorded, %v counted unrecordable; no allow while full",
		ledgerDown, full, stored, unrecordable)
	requireWhole(t, ext.ClientURL())
}

// TestAuditShutdownFlush: on SIGTERM verifierd flushes its spool to NATS
// before it drains the connection (STYLE §6), so a backlog built during an
// outage is in the stream once the process has exited; and when NATS stays
// down past --audit-flush-timeout, the backlog stays in the spool and the
// next start sends it.
func TestAuditShutdownFlush(t *testing.T) {
	ext := natstest.StartExternal(t)
	w := newWorld(t)
	up := newUpstream(t)
	dataDir := t.TempDir()
	args := []string{"--upstream", up.URL, "--nats-url", ext.ClientURL(), "--node-id", "flush-a",
		"--data-dir", dataDir, "--audit-flush-timeout", "15s"}
	n := startVerifierd(t, w, true, args...)
	c := &http.Client{Timeout: 30 * time.Second}
	dec := newDecisions()
	if d := signedGet(t, w, c, n, dec, "flush-before"); d.status != 200 {
		t.Fatalf("before: %d %s", d.status, d.reason)
	}

	// A backlog, then NATS back and SIGTERM at once: the flush sends it.
	ext.Stop()
	for i := range 100 {
		signedGet(t, w, c, n, dec, fmt.Sprintf("flush-down-%d", i))
	}
	ext.Start()
	n.stop()
	if strings.Contains(n.logs.String(), "audit flush incomplete") {
		t.Errorf("the flush did not finish:\n%s", n.logs.String())
	}
	all := dec.snapshot()
	msgs := readAudit(t, ext.ClientURL())
	checkAudit(t, msgs, "flush-a", all, 2)

	// NATS down through the whole shutdown: the backlog stays on disk.
	n = startVerifierd(t, w, true, append(args[:len(args)-1:len(args)-1], "1s")...)
	ext.Stop()
	for i := range 20 {
		signedGet(t, w, c, n, dec, fmt.Sprintf("flush-left-%d", i))
	}
	n.stop()
	if !strings.Contains(n.logs.String(), "audit flush incomplete") {
		t.Errorf("no \"audit flush incomplete\" with NATS down:\n%s", n.logs.String())
	}
	ext.Start()
	n = startVerifierd(t, w, true, args...)
	all = dec.snapshot()
	msgs = waitAudit(t, ext.ClientURL(), "flush-a", len(all), 6)
	checkAudit(t, msgs, "flush-a", all, 6)
	requireWhole(t, ext.ClientURL())
}
