package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/signer"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// TestBundleFleet: three nodes in NATS mode on one nats-server. A new
// client is denied passport_key_unknown, then merge-source, sign and publish
// admit it on every node without a restart (the time from publish to
// allowed everywhere is logged); rollbacks by publish and by a direct put,
// and a document signed by an unknown key, change nothing; bundlepub status
// shows the fleet converged; a bundle published after a NATS restart
// reaches every node.
func TestBundleFleet(t *testing.T) {
	c := newFleet(t, fleetOpts{external: true})
	mustBundlepub(t, c.publishArgs()...)
	nodes := c.startN(t, 3, nodeOpts{})
	hc := &http.Client{Timeout: 30 * time.Second}
	for _, n := range nodes {
		if got := outcome(t, hc, c.signed(t, "GET", n.URL+"/v1/orders/1", "orders.get", nil)); got != "200" {
			t.Fatalf("known client on %s = %s, want 200", n.URL, got)
		}
	}

	key, err := signer.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	newcomer := client{key: key, kid: "caller-2", subject: "spiffe://e2e.local/workload/newcomer"}
	oldTrust, oldPolicy := filepath.Join(c.dir, "trust-1.json"), filepath.Join(c.dir, "policy-1.json")
	copyFile(t, c.trust, oldTrust)
	copyFile(t, c.policy, oldPolicy)

	t.Run("add a client", func(t *testing.T) {
		for _, n := range nodes {
			if got := outcome(t, hc, newcomer.request(t, n, "/v1/orders/2", "orders.get")); got != "401 passport_key_unknown" {
				t.Fatalf("new client before publish on %s = %s, want 401 passport_key_unknown", n.URL, got)
			}
		}
		mustBundlepub(t, "merge-source", "--policy", c.policy, "--trust", c.trust,
			"--issuer", wIssuer, "--trust-domain", wDomain, "--kid", newcomer.kid,
			"--public-key-b64", newcomer.key.PublicKeyB64(), "--subject-exact", newcomer.subject,
			"--route", "orders.get", "--out-policy", c.policy, "--out-trust", c.trust)
		c.resign(t, c.trust, c.trust, 2)
		c.resign(t, c.policy, c.policy, 2)

		start := time.Now()
		out := mustBundlepub(t, c.publishArgs()...)
		published := time.Since(start)
		allowed := make([]time.Duration, len(nodes))
		for i, n := range nodes {
			testwait.Until(t, 30*time.Second, "new client allowed on "+n.URL, func() error {
				if got := outcome(t, hc, newcomer.request(t, n, "/v1/orders/3", "orders.get")); got != "200" {
					return errors.New(got)
				}
				allowed[i] = time.Since(start)
				return nil
			})
		}
		t.Logf("add a client: bundlepub publish took %s; new client allowed after %v on nodes 0..2 (from the start of publish)\n%s",
			published.Round(time.Millisecond), roundAll(allowed), out)
		c.allOn(t, 3, 2, 2)
		table := mustBundlepub(t, "status", "--nats-url", c.url, "--timeout", "1s")
		if !strings.Contains(table, "converged: 3 nodes on policy bundle 2") {
			t.Errorf("bundlepub status table:\n%s\nwant converged on 2", table)
		}
		t.Logf("bundlepub status:\n%s", table)
	})

	kv := natstest.JetStream(t, natstest.Connect(t, c.url))
	bucket, err := kv.KeyValue(t.Context(), "TRUSTPLANE_BUNDLES")
	if err != nil {
		t.Fatal(err)
	}
	unchanged := func(t *testing.T, what string) {
		t.Helper()
		c.allOn(t, 3, 2, 2)
		for _, n := range nodes {
			if got := outcome(t, hc, newcomer.request(t, n, "/v1/orders/4", "orders.get")); got != "200" {
				t.Errorf("after %s, new client on %s = %s, want 200", what, n.URL, got)
			}
		}
	}
	rejected := func(n *node, kind string) float64 {
		return metric(t, n, "tpcluster_bundle_rejected_total", `kind="`+kind+`"`)
	}

	t.Run("rollback by publish refused", func(t *testing.T) {
		code, out, errs := bundlepub(t, "publish", "--nats-url", c.url, "--trust-material", oldTrust,
			"--policy-bundle", oldPolicy, "--bundle-public-key", c.bundlePub)
		if code != 1 || !strings.Contains(errs, "rollback refused") {
			t.Fatalf("publish of sequence 1 over 2 = exit %d\nstdout: %s\nstderr: %s\nwant exit 1, rollback refused", code, out, errs)
		}
		t.Logf("publish of the old files: %s", strings.TrimSpace(errs))
		unchanged(t, "a refused publish")
	})

	t.Run("rollback by direct put refused", func(t *testing.T) {
		before := make([]float64, len(nodes))
		for i, n := range nodes {
			before[i] = rejected(n, "policy_bundle")
		}
		old, err := os.ReadFile(oldPolicy)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bucket.Put(t.Context(), "policy-bundle", old); err != nil {
			t.Fatal(err)
		}
		for i, n := range nodes {
			testwait.Until(t, 30*time.Second, "rollback counted on "+n.URL, func() error {
				if got := rejected(n, "policy_bundle"); got <= before[i] {
					return fmt.Errorf("rejected %v", got)
				}
				return nil
			})
			if !strings.Contains(n.logs.String(), "rollback refused") {
				t.Errorf("node %d did not report the rollback in its log", i)
			}
		}
		unchanged(t, "a rollback put into the bucket")
	})

	t.Run("unknown signing key refused", func(t *testing.T) {
		doc, err := os.ReadFile(c.policy)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(doc, &m); err != nil {
			t.Fatal(err)
		}
		m["sequence"] = 99
		raw, _ := json.Marshal(m)
		forged := signedByIntruder(t, raw)
		forgedPath := filepath.Join(c.dir, "policy-forged.json")
		if err := os.WriteFile(forgedPath, forged, 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, errs := bundlepub(t, "publish", "--nats-url", c.url, "--trust-material", c.trust,
			"--policy-bundle", forgedPath, "--bundle-public-key", c.bundlePub)
		if code != 1 || !strings.Contains(errs, "not accepted") {
			t.Errorf("publish of a forged bundle = exit %d: %s; want exit 1, key not accepted", code, errs)
		}
		before := make([]float64, len(nodes))
		for i, n := range nodes {
			before[i] = rejected(n, "policy_bundle")
		}
		if _, err := bucket.Put(t.Context(), "policy-bundle", forged); err != nil {
			t.Fatal(err)
		}
		for i, n := range nodes {
			testwait.Until(t, 30*time.Second, "forged bundle counted on "+n.URL, func() error {
				if got := rejected(n, "policy_bundle"); got <= before[i] {
					return fmt.Errorf("rejected %v", got)
				}
				return nil
			})
		}
		unchanged(t, "a bundle signed by an unknown key")
	})

	t.Run("watch survives a NATS restart", func(t *testing.T) {
		c.ext.Stop()
		c.ext.Start()
		restarted := time.Now()
		c.resign(t, c.trust, c.trust, 3)
		c.resign(t, c.policy, c.policy, 3)
		testwait.Until(t, 30*time.Second, "publish after the restart", func() error {
			code, out, errs := bundlepub(t, c.publishArgs()...)
			if code != 0 {
				return fmt.Errorf("exit %d: %s %s", code, out, errs)
			}
			return nil
		})
		published := time.Since(restarted)
		took := c.allOn(t, 3, 3, 3)
		t.Logf("NATS restart: publish succeeded %s after the restart; all 3 nodes on sequence 3 %s after that",
			published.Round(time.Millisecond), took.Round(time.Millisecond))
	})
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
