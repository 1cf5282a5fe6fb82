package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/testwait"
)

// TestAuditStreamRefused: a node whose audit stream the NATS servers refuse
// (its size limit above what the store can reserve, as the 10 GiB default
// was on the shipped servers) says so everywhere: /_tp/readyz is
// 503 naming the audit_stream check and the NATS error, the log has an
// error with it, the stream failures are counted, and the spool's oldest
// age grows with an event stuck in it, although nothing was ever published.
func TestAuditStreamRefused(t *testing.T) {
	w := newWorld(t)
	up := newUpstream(t)
	// 1 PiB: more than the embedded server's store (75% of the free disk).
	n := startVerifierd(t, w, false, "--upstream", up.URL, "--audit-max-bytes", "1125899906842624", "--node-id", "refused-a")
	c := &http.Client{Timeout: 30 * time.Second}

	var body string
	took := testwait.Until(t, 60*time.Second, "readyz 503 naming audit_stream", func() error {
		resp, err := c.Get(n.URL + "/_tp/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, `"audit_stream"`) || !strings.Contains(body, "insufficient") {
			return fmt.Errorf("readyz %d %s", resp.StatusCode, body)
		}
		return nil
	})
	t.Logf("readyz 503 after %v: %s", took, body)

	// Decisions are still recorded (the spool has room) and allowed.
	dec := newDecisions()
	if d := signedGet(t, w, c, n, dec, "refused-0"); d.status != http.StatusOK {
		t.Fatalf("request with room in the spool: %d %s, want 200", d.status, d.reason)
	}
	testwait.Until(t, 30*time.Second, "a growing spool age", func() error {
		if v := metric(t, n, "tpcluster_audit_spool_oldest_age_seconds", ""); v <= 0 {
			return fmt.Errorf("tpcluster_audit_spool_oldest_age_seconds = %v", v)
		}
		return nil
	})
	if v := metric(t, n, "tpcluster_audit_stream_failures_total", ""); v < 1 {
		t.Errorf("tpcluster_audit_stream_failures_total = %v, want at least 1", v)
	}
	if logs := n.logs.String(); !strings.Contains(logs, "audit stream cannot be created") || !strings.Contains(logs, "insufficient") {
		t.Errorf("verifierd log lacks the error naming the refusal:\n%s", logs)
	}
}
