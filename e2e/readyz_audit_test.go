package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// TestReadyzAuditBacklog: a node whose audit events cannot reach the audit
// stream (another stream holds its subjects, so the stream cannot be
// created) while the ledger works: readyz says 503 for audit_stream from
// the start, and also for audit_spool once more than
// --ready-max-audit-pending events wait; when the stream can be created the
// spool drains and readyz says 200 again.
func TestReadyzAuditBacklog(t *testing.T) {
	s := natstest.Server(t)
	js := natstest.JetStream(t, natstest.Connect(t, s.ClientURL()))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SQUATTER", Subjects: []string{audit.SubjectPrefix + ">"}}); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	up := newUpstream(t)
	n := startVerifierd(t, w, false, "--upstream", up.URL, "--nats-url", s.ClientURL(),
		"--node-id", "backlog-a", "--ready-max-audit-pending", "5")

	c := &http.Client{Timeout: 30 * time.Second}
	readyz := func() (int, string) {
		resp, err := c.Get(n.URL + "/_tp/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Two bundle events wait, not more than 5; the stream check fails.
	testwait.Until(t, 30*time.Second, "readyz naming audit_stream only", func() error {
		if code, body := readyz(); code != 503 || !strings.Contains(body, `"audit_stream":"unavailable"`) ||
			!strings.Contains(body, `"audit_spool":"ok"`) || !strings.Contains(body, `"ledger":"ok"`) {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	for i := range 6 {
		if a := send(t, c, w.signed(t, "GET", n.URL+fmt.Sprintf("/v1/orders/backlog-%d", i), "orders.get", nil)); a.status != 200 {
			t.Fatalf("request %d: %d %s, want 200 (the spool has room)", i, a.status, a.body)
		}
	}
	// Two bundle events and six decisions wait: more than 5.
	if code, body := readyz(); code != 503 || !strings.Contains(body, `"audit_spool":"unavailable"`) ||
		!strings.Contains(body, "--ready-max-audit-pending") || !strings.Contains(body, `"ledger":"ok"`) {
		t.Fatalf("readyz with 8 events waiting = %d %s, want 503 naming audit_spool, ledger ok", code, body)
	}

	if err := js.DeleteStream(ctx, "SQUATTER"); err != nil {
		t.Fatal(err)
	}
	took := testwait.Until(t, 60*time.Second, "readyz 200 once the audit stream exists", func() error {
		if code, body := readyz(); code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	t.Logf("readyz 200 %v after the squatting stream was deleted (the publisher retries with back-off up to 5 s)", took.Round(time.Millisecond))
	msgs := waitAudit(t, s.ClientURL(), "backlog-a", 6, 2)
	if len(msgs) != 8 {
		t.Errorf("audit stream holds %d events, want 8", len(msgs))
	}
}
