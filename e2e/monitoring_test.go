package e2e

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/conformance"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// The alerting rules and the Grafana dashboard in
// deploy/monitoring may only use metrics a real verifierd exports. A rule
// over a misspelt name never fires, which no syntax check notices.

// metricRef matches a Prometheus metric name of ours in a PromQL
// expression.
var metricRef = regexp.MustCompile(`\btpcluster_[a-z0-9_]+`)

// exposedNames scrapes n's /_tp/metrics and returns every sample name in
// it (histogram series included: _bucket, _sum, _count).
func exposedNames(t testing.TB, n *node) map[string]bool {
	t.Helper()
	resp, err := http.Get(n.URL + "/_tp/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for line := range strings.Lines(string(b)) {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		names[strings.TrimSpace(name)] = true
	}
	return names
}

// monitoringRefs reads every tpcluster_* name the rules and the dashboard
// use, by file.
func monitoringRefs(t testing.TB) map[string][]string {
	t.Helper()
	dir := filepath.Join(conformance.ModuleRoot(t), "deploy", "monitoring")
	refs := map[string][]string{}
	for _, name := range []string{"tpcluster-alerts.yaml", "tpcluster-dashboard.json"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(name, ".json") {
			var dash struct {
				Panels []struct {
					Title   string
					Targets []struct{ Expr string }
				}
			}
			if err := json.Unmarshal(b, &dash); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if len(dash.Panels) == 0 {
				t.Fatalf("%s has no panels", name)
			}
			for _, p := range dash.Panels {
				if len(p.Targets) == 0 {
					t.Errorf("%s: panel %q has no query", name, p.Title)
				}
				for _, q := range p.Targets {
					if !metricRef.MatchString(q.Expr) {
						t.Errorf("%s: panel %q query %q uses no tpcluster metric", name, p.Title, q.Expr)
					}
				}
			}
		}
		for _, m := range metricRef.FindAllString(string(b), -1) {
			if !slices.Contains(refs[name], m) {
				refs[name] = append(refs[name], m)
			}
		}
		if len(refs[name]) == 0 {
			t.Fatalf("%s names no tpcluster metric", name)
		}
	}
	return refs
}

// TestMonitoringMetricsExist runs a NATS-mode verifierd with bundlepub,
// makes it allow, replay-deny and audit a request, bridge one to a real
// OAuth provider (newEgressSetup) and get a 502 when the provider is down,
// scrapes /_tp/metrics and checks that every metric the alerting rules
// and the dashboard name is one it exports. The egress counts exist from
// the start on a node with a provider credential, the token request
// histogram only once a token was requested: hence the egress route.
func TestMonitoringMetricsExist(t *testing.T) {
	refs := monitoringRefs(t)
	eg := newEgressSetup(t)
	c := newFleet(t, fleetOpts{servers: 1, edit: eg.edit})
	c.startPublisher(t, time.Second)
	n := c.start(t, nodeOpts{id: "node-metrics", flags: eg.flags()})

	// Before any token request, acme's failure count is exported at 0,
	// so TPClusterEgressTokenFailing's increase() sees the first failure.
	if !hasSample(scrape(t, n.URL), "tpcluster_egress_token_requests_total", "0", `outcome="failed"`, `provider="acme"`) {
		t.Errorf("before any token request, /_tp/metrics has no failed count of 0 for acme")
	}

	hc := &http.Client{Timeout: 30 * time.Second}
	req := c.signed(t, "GET", n.URL+"/v1/orders/ord_1", "orders.get", nil)
	if a := send(t, hc, req); a.status != 200 {
		t.Fatalf("signed GET = %d %s", a.status, a.body)
	}
	if a := send(t, hc, req); a.reason() != "jti_replay" {
		t.Fatalf("replay = %d %s, want jti_replay", a.status, a.body)
	}
	if a := send(t, hc, c.signed(t, "GET", n.URL+"/crm/contacts/1", "crm.get", nil)); a.status != 200 || eg.op.Count() != 1 {
		t.Fatalf("egress GET = %d %s after %d token requests, want 200 after 1", a.status, a.body, eg.op.Count())
	}
	// Another route is another cache key: a token request, which fails.
	eg.op.Stop()
	if a := send(t, hc, c.signed(t, "GET", n.URL+"/crm/contacts", "crm.list", nil)); a.status != 502 || a.reason() != "egress_token_unavailable" {
		t.Fatalf("egress GET, provider down = %d %s, want 502 egress_token_unavailable", a.status, a.body)
	}
	if !hasSample(scrape(t, n.URL), "tpcluster_egress_token_requests_total", "1", `outcome="failed"`, `provider="acme"`) {
		t.Errorf("after the 502, /_tp/metrics has no failed count of 1 for acme")
	}

	// The histograms and the audit counters appear once something was
	// recorded; the publisher acknowledges asynchronously.
	var names map[string]bool
	took := testwait.Until(t, 30*time.Second, "audit publish acknowledged in /_tp/metrics", func() error {
		names = exposedNames(t, n)
		if !names["tpcluster_audit_events_published_total"] {
			return errors.New("not yet")
		}
		return nil
	})
	t.Logf("metrics complete after %v; %d sample names", took, len(names))
	for file, ms := range refs {
		for _, m := range ms {
			if !names[m] {
				t.Errorf("%s uses %s, which verifierd does not export", file, m)
			}
		}
	}
	if t.Failed() {
		var have []string
		for k := range names {
			have = append(have, k)
		}
		slices.Sort(have)
		t.Logf("verifierd exports:\n%s", strings.Join(have, "\n"))
	}
}

// hasSample says whether metrics (Prometheus text) has a sample of name
// with every one of labels and the value want.
func hasSample(metrics, name, want string, labels ...string) bool {
	for line := range strings.Lines(metrics) {
		series, value, ok := strings.Cut(strings.TrimSpace(line), "} ")
		if !ok || !strings.HasPrefix(series, name+"{") || value != want {
			continue
		}
		if !slices.ContainsFunc(labels, func(l string) bool { return !strings.Contains(series, l) }) {
			return true
		}
	}
	return false
}
