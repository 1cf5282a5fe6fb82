package e2e

// Audit through failures: a NATS outage, a kill -9 during the spool drain,
// a full spool, and shutdown with and without NATS (SPEC §9, STYLE §6).

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/reason"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// signedGet sends a fresh signed GET and records the answer.
func signedGet(t testing.TB, w *world, c *http.Client, n *node, dec *ledgerOf, tag string) decided {
	t.Helper()
	return dec.add(t, send(t, c, w.signed(t, "GET", n.URL+"/v1/orders/"+tag, "orders.get", nil)))
}

// outageRun drives one node through a NATS outage: allowed before,
// replay_ledger_unavailable during (count requests, concurrently), allowed
// after. It returns once an allow came back.
func outageRun(t *testing.T, f *channel, n *node, dec *ledgerOf, count int, tag string) {
	t.Helper()
	w := f.world
	c := &http.Client{Timeout: 30 * time.Second}
	for i := range 5 {
		if d := signedGet(t, w, c, n, dec, fmt.Sprintf("%s-before-%d", tag, i)); d.status != 200 {
			t.Fatalf("before the outage: %d %s", d.status, d.reason)
		}
	}
	f.ext.Stop()
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
	f.ext.Start()
	i := 0
	testwait.Until(t, 60*time.Second, "an allow after the NATS restart", func() error {
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
	f := newFleet(t, fleetOpts{external: true, auditNodes: []string{"outage-a"}})
	n := f.start(t, nodeOpts{id: "outage-a", files: true})
	dec := newDecisions()
	outageRun(t, f, n, dec, 50, "o")
	all := dec.snapshot()
	msgs := waitAudit(t, f.url, "outage-a", len(all), 2)
	checkAudit(t, msgs, "outage-a", all, 2)
	if len(msgs) != len(all)+2 {
		t.Errorf("stream holds %d messages, want %d (decisions + 2 bundle events)", len(msgs), len(all)+2)
	}
	requireWhole(t, f.world, f.url)
}

// TestAuditKillDuringDrain: as TestAuditOutage, with a backlog large enough
// to drain slowly (one publish in flight at a time), and verifierd killed
// with SIGKILL while the backlog drains. After a restart on the same spool
// every event is stored once: none lost, none twice.
func TestAuditKillDuringDrain(t *testing.T) {
	f := newFleet(t, fleetOpts{external: true, auditNodes: []string{"kill-a"}})
	w := f.world
	o := nodeOpts{id: "kill-a", files: true, dataDir: t.TempDir(), flags: []string{"--audit-publish-window", "1"}}
	n := f.start(t, o)
	dec := newDecisions()
	const backlog = 3000
	outageRun(t, f, n, dec, backlog, "k")

	// Kill while the stream holds part of the backlog.
	js := natstest.JetStream(t, natstest.Connect(t, f.url))
	var stored uint64
	testwait.Until(t, 60*time.Second, "the backlog to start draining", func() error {
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

	o.flags = nil // the default window after the restart
	n = f.start(t, o)
	c := &http.Client{Timeout: 30 * time.Second}
	for i := range 3 {
		if d := signedGet(t, w, c, n, dec, fmt.Sprintf("k-restarted-%d", i)); d.status != 200 {
			t.Errorf("after the restart: %d %s", d.status, d.reason)
		}
	}
	all := dec.snapshot()
	msgs := waitAudit(t, f.url, "kill-a", len(all), 4)
	checkAudit(t, msgs, "kill-a", all, 4)
	if len(msgs) != len(all)+4 {
		t.Errorf("stream holds %d messages, want %d (decisions + 4 bundle events): something stored twice or lost", len(msgs), len(all)+4)
	}
	// Events stored before the kill but not yet marked in the spool's
	// cursor were sent again; the duplicate window acknowledged them
	// without storing them.
	t.Logf("after the restart: %v resent events acknowledged as duplicates",
		metric(t, n, "tpcluster_audit_events_published_total", `duplicate="true"`))
	requireWhole(t, f.world, f.url)
}

// TestAuditSpoolFull: a node with a small spool loses NATS: decisions fill
// the spool, then every request is denied audit_unavailable (counted as
// unrecordable), never allowed. When NATS returns the spool drains, allows
// resume, and every answer other than audit_unavailable has its event.
func TestAuditSpoolFull(t *testing.T) {
	f := newFleet(t, fleetOpts{external: true, auditNodes: []string{"full-a"}})
	w := f.world
	n := f.start(t, nodeOpts{id: "full-a", files: true, flags: []string{"--audit-spool-max-bytes", "65536"}})
	c := &http.Client{Timeout: 30 * time.Second}
	dec := newDecisions()
	if d := signedGet(t, w, c, n, dec, "before"); d.status != 200 {
		t.Fatalf("before: %d %s", d.status, d.reason)
	}
	f.ext.Stop()
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

	f.ext.Start()
	testwait.Until(t, 60*time.Second, "an allow after the spool drained", func() error {
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
	msgs := waitDecisions(t, f.url, "full-a", all, 2)
	checkAudit(t, msgs, "full-a", all, 2)
	// Each audit_unavailable denial is either in the stream (recorded
	// while a little room was left) or counted as unrecordable: none is
	// lost quietly.
	var stored int
	for _, m := range msgs {
		if m.ev.ReasonCode == reason.AuditUnavailable {
			stored++
		}
	}
	if stored+int(unrecordable) != full {
		t.Errorf("audit_unavailable: %d stored + %v counted unrecordable, want %d denials", stored, unrecordable, full)
	}
	t.Logf("spool full: %d decisions recorded with NATS down, then %d denied audit_unavailable: %d of them recorded, %v counted unrecordable; no allow while full",
		ledgerDown, full, stored, unrecordable)
	requireWhole(t, f.world, f.url)
}

// TestAuditShutdownFlush: on SIGTERM verifierd flushes its spool to NATS
// before it drains the connection (STYLE §6), so a backlog built during an
// outage is in the stream once the process has exited; and when NATS stays
// down past --audit-flush-timeout, the backlog stays in the spool and the
// next start sends it.
func TestAuditShutdownFlush(t *testing.T) {
	f := newFleet(t, fleetOpts{external: true, auditNodes: []string{"flush-a"}})
	w := f.world
	o := nodeOpts{id: "flush-a", files: true, dataDir: t.TempDir(), flags: []string{"--audit-flush-timeout", "15s"}}
	n := f.start(t, o)
	c := &http.Client{Timeout: 30 * time.Second}
	dec := newDecisions()
	if d := signedGet(t, w, c, n, dec, "flush-before"); d.status != 200 {
		t.Fatalf("before: %d %s", d.status, d.reason)
	}

	// A backlog, then NATS back and SIGTERM at once: the flush sends it.
	f.ext.Stop()
	for i := range 100 {
		signedGet(t, w, c, n, dec, fmt.Sprintf("flush-down-%d", i))
	}
	f.ext.Start()
	n.stop()
	if strings.Contains(n.logs.String(), "audit flush incomplete") {
		t.Errorf("the flush did not finish:\n%s", n.logs.String())
	}
	all := dec.snapshot()
	msgs := readAudit(t, f.url)
	checkAudit(t, msgs, "flush-a", all, 2)

	// NATS down through the whole shutdown: the backlog stays on disk.
	n = f.start(t, nodeOpts{id: o.id, files: true, dataDir: o.dataDir, flags: []string{"--audit-flush-timeout", "1s"}})
	f.ext.Stop()
	for i := range 20 {
		signedGet(t, w, c, n, dec, fmt.Sprintf("flush-left-%d", i))
	}
	n.stop()
	if !strings.Contains(n.logs.String(), "audit flush incomplete") {
		t.Errorf("no \"audit flush incomplete\" with NATS down:\n%s", n.logs.String())
	}
	f.ext.Start()
	n = f.start(t, o)
	all = dec.snapshot()
	msgs = waitAudit(t, f.url, "flush-a", len(all), 6)
	checkAudit(t, msgs, "flush-a", all, 6)
	requireWhole(t, f.world, f.url)
}
