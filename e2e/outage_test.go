package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/testwait"
)

// TestNATSOutage stops an external nats-server (built from the go.mod
// version) under a running verifierd: requests are denied 503
// replay_ledger_unavailable within the ledger timeout, never allowed; once
// NATS is back, allows resume without restarting verifierd. It records the
// times it measured.
func TestNATSOutage(t *testing.T) {
	c := newFleet(t, fleetOpts{external: true})
	w := c.world
	const ledgerTimeout = 2 * time.Second
	n := c.start(t, nodeOpts{files: true, flags: []string{"--ledger-timeout", ledgerTimeout.String()}})
	hc := &http.Client{Timeout: 30 * time.Second}

	if a := send(t, hc, w.signed(t, "GET", n.URL+"/v1/orders/before", "orders.get", nil)); a.status != 200 {
		t.Fatalf("before the outage = %d %s", a.status, a.body)
	}

	c.ext.Stop()
	stopped := time.Now()
	var worst time.Duration
	for i := range 5 {
		req := w.signed(t, "GET", n.URL+"/v1/orders/during-"+string(rune('a'+i)), "orders.get", nil)
		start := time.Now()
		a := send(t, hc, req)
		took := time.Since(start)
		worst = max(worst, took)
		if a.status != 503 || a.reason() != "replay_ledger_unavailable" {
			t.Fatalf("during the outage = %d %s, want 503 replay_ledger_unavailable", a.status, a.body)
		}
		// Generous bound for a noisy machine: the ledger timeout plus 3s.
		if took > ledgerTimeout+3*time.Second {
			t.Errorf("denial took %s, ledger timeout is %s", took, ledgerTimeout)
		}
	}
	t.Logf("outage: slowest replay_ledger_unavailable denial %s (ledger timeout %s)", worst.Round(time.Millisecond), ledgerTimeout)
	// Readiness follows the ledger: 503 with the reason in the body, which
	// still lists the loaded bundle pair.
	if a := send(t, hc, mustGet(t, n.URL+"/_tp/readyz")); a.status != 503 ||
		!strings.Contains(string(a.body), `"ledger":"unavailable"`) || !strings.Contains(string(a.body), `"policy"`) {
		t.Errorf("readyz during the outage = %d %s", a.status, a.body)
	}

	c.ext.Start()
	restarted := time.Now()
	i := 0
	took := testwait.Until(t, 60*time.Second, "allows after NATS restart", func() error {
		i++
		a := send(t, hc, w.signed(t, "GET", n.URL+"/v1/orders/after-"+time.Now().Format("150405.000000"), "orders.get", nil))
		if a.status != 200 {
			return fmt.Errorf("%d %s", a.status, a.body)
		}
		return nil
	})
	t.Logf("outage: NATS down for %s; first allow %s after restart (%d attempts)",
		restarted.Sub(stopped).Round(time.Millisecond), took.Round(time.Millisecond), i)
}

func mustGet(t testing.TB, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
