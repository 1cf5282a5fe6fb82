package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/testport"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// TestEgress drives the oauth_compat_egress tier through the verifierd
// binary (file-mode bundles, embedded NATS for the ledger and the audit
// stream) against a real OAuth authorization server (zitadel/oidc's OP,
// in the test process): the upstream receives the provider token and
// nothing of the caller's credentials, the audit event names the token by
// its hash only, a provider token presented as a caller credential is
// refused, a provider outage is a recorded 502 and recovers, a policy
// naming a provider the node has no credential for is refused with a
// rollback and bundle_rejected, and a missing secret file exits 2.
func TestEgress(t *testing.T) {
	eg := newEgressSetup(t)
	op, acme := eg.op, eg.provider
	w := newWorldWith(t, eg.edit)

	t.Run("missing secret file exits 2", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nope.secret")
		code, _, stderr := runBinary(t, "verifierd", "--trust-material", w.trust, "--policy-bundle", w.policy,
			"--bundle-public-key", w.bundlePub, "--upstream", "http://127.0.0.1:1", "--egress-secret", "acme="+missing)
		if code != 2 || !strings.Contains(stderr, "--egress-secret=acme="+missing) {
			t.Errorf("exit %d, stderr %q; want 2 naming --egress-secret", code, stderr)
		}
	})

	up := newUpstream(t)
	natsAddr := testport.Addrs(t, 1)[0]
	dataDir := t.TempDir()
	args := []string{"--upstream", up.URL, "--nats-listen", natsAddr, "--data-dir", dataDir,
		"--node-id", "egress-a", "--forward-proof-headers"}
	n := startVerifierd(t, w, true, append(args, eg.flags()...)...)
	useEmbeddedCreds(t, "nats://"+natsAddr, dataDir)
	c := &http.Client{Timeout: 30 * time.Second}

	// 1. Bridged: the upstream gets the provider token, no proof header.
	caller := w.signed(t, "GET", n.URL+"/crm/contacts/1", "crm.get", nil)
	a := send(t, c, caller)
	if a.status != 200 {
		t.Fatalf("GET = %d %s", a.status, a.body)
	}
	got := up.last(t)
	auth := got.Header.Values("Authorization")
	if len(auth) != 1 || !strings.HasPrefix(auth[0], "Bearer ") || auth[0] == caller.Header.Get("Authorization") {
		t.Fatalf("upstream Authorization = %q, want one provider bearer token", auth)
	}
	token := strings.TrimPrefix(auth[0], "Bearer ")
	for _, h := range []string{"X-Trustplane-Proof", "X-Trustplane-Nonce", "X-Trustplane-Body-Sha256", "X-Trustplane-Transcript-Sha256", "X-Trustplane-Assertion"} {
		if v := got.Header.Values(h); len(v) != 0 {
			t.Errorf("upstream got %s despite egress (and --forward-proof-headers)", h)
		}
	}
	if reqs := op.Requests(); len(reqs) != 1 || reqs[0].Scope != "crm.read crm.list" || reqs[0].Tenant != "t-7" || reqs[0].ClientAuth != "client_secret_basic" {
		t.Errorf("the OP received %+v", reqs)
	}

	// 2. The decision's audit event names the token by its hash only.
	sum := sha256.Sum256([]byte(token))
	ev := auditEventOf(t, "nats://"+natsAddr, a.header.Get("X-Request-Id"))
	e := ev.ev
	if e.ReasonCode != "allowed" || e.EgressProvider != "acme" || e.EgressGrant != "client_credentials" ||
		e.EgressScopes != "crm.read crm.list" || e.EgressAudience != "https://crm.example" || e.EgressTokenLifetimeS < 590 ||
		e.EgressFromCache == nil || *e.EgressFromCache || e.EgressTokenSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("audit event = %s", ev.data)
	}
	if strings.Contains(string(ev.data), token) {
		t.Error("the audit event holds the provider token")
	}
	// The same subject's next request is served from the cache.
	b := send(t, c, w.signed(t, "GET", n.URL+"/crm/contacts/2", "crm.get", nil))
	if b.status != 200 || op.Count() != 1 || up.last(t).Header.Get("Authorization") != auth[0] {
		t.Errorf("second GET = %d, %d token requests; want 200 with the cached token", b.status, op.Count())
	}
	if e := auditEventOf(t, "nats://"+natsAddr, b.header.Get("X-Request-Id")).ev; e.EgressFromCache == nil || !*e.EgressFromCache {
		t.Error("the second event does not say the token came from the cache")
	}

	// 3. Never an ingress mode: the provider token as a caller credential.
	bare, _ := http.NewRequest("GET", n.URL+"/crm/contacts/3", nil)
	bare.Header.Set("Authorization", auth[0])
	if a := send(t, c, bare); a.status != 401 || a.reason() != "passport_malformed" {
		t.Errorf("provider token as the credential = %d %s, want 401 passport_malformed", a.status, a.body)
	}

	// 4. Outage: another route (another cache key) gets 502, recorded;
	// then the provider is back.
	op.Stop()
	start := time.Now()
	down := send(t, c, w.signed(t, "GET", n.URL+"/crm/contacts", "crm.list", nil))
	if down.status != 502 || down.reason() != "egress_token_unavailable" {
		t.Fatalf("provider down = %d %s, want 502 egress_token_unavailable", down.status, down.body)
	}
	t.Logf("provider down: 502 after %s", time.Since(start))
	de := auditEventOf(t, "nats://"+natsAddr, down.header.Get("X-Request-Id"))
	if de.ev.Outcome != audit.OutcomeDeny || de.ev.DetailCode != "egress_token" || de.ev.EgressProvider != "acme" ||
		de.ev.EgressTokenSHA256 != "" || !strings.Contains(de.ev.DetailReason, "dial tcp") {
		t.Errorf("outage event = %s", de.data)
	}
	op.Restart()
	if a := send(t, c, w.signed(t, "GET", n.URL+"/crm/contacts", "crm.list", nil)); a.status != 200 {
		t.Errorf("after the provider is back = %d %s", a.status, a.body)
	}

	// Metrics: token requests by outcome, cache hits, by provider.
	metrics := scrape(t, n.URL)
	for _, want := range [][]string{
		{"tpcluster_egress_token_requests_total{", `outcome="ok"`, `provider="acme"`},
		{"tpcluster_egress_token_requests_total{", `outcome="failed"`, `provider="acme"`},
		{"tpcluster_egress_cache_hits_total{", `provider="acme"`},
		{"tpcluster_egress_token_request_duration_seconds_count{", `provider="acme"`},
	} {
		found := false
		for line := range strings.Lines(metrics) {
			ok := strings.HasPrefix(line, want[0])
			for _, part := range want[1:] {
				ok = ok && strings.Contains(line, part)
			}
			found = found || ok
		}
		if !found {
			t.Errorf("/_tp/metrics has no %q line", want)
		}
	}

	// 5. A policy naming a provider this node has no credential for is
	// refused: bundle_rejected, the node stays on sequence 1 and keeps
	// bridging.
	bk, err := keyfile.ReadPrivate(filepath.Join(w.dir, "bundle.key"))
	if err != nil {
		t.Fatal(err)
	}
	other := map[string]any{"provider_id": "globex", "token_endpoint": "https://auth.globex.example/token", "client_id": "tp", "client_auth": "client_secret_post"}
	var doc map[string]any
	raw, _ := os.ReadFile(w.policy)
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "signed_by")
	delete(doc, "signature")
	doc["sequence"] = 2
	doc["egress_providers"] = []any{acme, other}
	unsigned, _ := json.Marshal(doc)
	signed, err := bundle.Sign(unsigned, bundle.NewSigningKey(bk), "local://e2e")
	if err != nil {
		t.Fatal(err)
	}
	tmp := w.policy + ".tmp"
	if err := os.WriteFile(tmp, signed, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, w.policy); err != nil {
		t.Fatal(err)
	}
	var rejected auditMsg
	testwait.Until(t, 30*time.Second, "bundle_rejected event", func() error {
		for _, m := range readAudit(t, "nats://"+natsAddr) {
			if m.ev.ReasonCode == "bundle_rejected" {
				rejected = m
				return nil
			}
		}
		return fmt.Errorf("no bundle_rejected event yet")
	})
	if !strings.Contains(rejected.ev.DetailReason, `provider "globex"`) {
		t.Errorf("rejected event = %s", rejected.data)
	}
	if seq := policySequence(t, n.URL); seq != 1 {
		t.Errorf("policy sequence after the refused bundle = %d, want 1 (rollback)", seq)
	}
	if a := send(t, c, w.signed(t, "GET", n.URL+"/crm/contacts/4", "crm.get", nil)); a.status != 200 {
		t.Errorf("after the refused bundle = %d %s", a.status, a.body)
	}
}

// auditEventOf polls the audit stream for the event of request id.
func auditEventOf(t *testing.T, url, id string) auditMsg {
	t.Helper()
	var out auditMsg
	testwait.Until(t, 30*time.Second, "audit event of "+id, func() error {
		for _, m := range readAudit(t, url) {
			if m.ev.RequestID == id {
				out = m
				return nil
			}
		}
		return fmt.Errorf("no event for %s yet", id)
	})
	return out
}

// scrape returns a node's /_tp/metrics text.
func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/_tp/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// policySequence is the policy sequence a node's readyz reports.
func policySequence(t *testing.T, base string) int64 {
	t.Helper()
	resp, err := http.Get(base + "/_tp/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v struct {
		Policy struct {
			Sequence int64 `json:"sequence"`
		} `json:"policy"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("readyz %s: %v", b, err)
	}
	return v.Policy.Sequence
}
