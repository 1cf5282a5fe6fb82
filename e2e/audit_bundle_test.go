package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/reason"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// TestAuditBundleEvents: a node in NATS bundle mode records a
// bundle_applied event per document it applies and a bundle_rejected event
// for a policy bundle signed by an unknown key (SPEC §8.2): outcome bundle,
// no HTTP status, the document's kind, sequence and digest.
func TestAuditBundleEvents(t *testing.T) {
	c := newFleet(t, fleetOpts{external: true, auditNodes: []string{"bundle-a"}})
	mustBundlepub(t, c.publishArgs()...)
	c.start(t, nodeOpts{id: "bundle-a"})

	bundleEvents := func(want int) []auditMsg {
		t.Helper()
		var out []auditMsg
		testwait.Until(t, 30*time.Second, "bundle events", func() error {
			out = out[:0]
			for _, m := range readAudit(t, c.url) {
				if m.ev.NodeID == "bundle-a" && m.ev.Outcome == audit.OutcomeBundle {
					out = append(out, m)
				}
			}
			if len(out) < want {
				return fmt.Errorf("%d bundle events, want %d", len(out), want)
			}
			return nil
		})
		return out
	}
	applied := bundleEvents(2)
	kinds := map[string]bool{}
	for _, m := range applied {
		e := m.ev
		if m.subject != "trustplane.audit.bundle.bundle_applied" || !e.Accepted || e.BundleSequence != 1 || len(e.BundleSHA256) != 64 {
			t.Errorf("applied event on %s: %s", m.subject, m.data)
		}
		if bytes.Contains(m.data, []byte(`"status"`)) {
			t.Errorf("bundle event with an HTTP status: %s", m.data)
		}
		kinds[e.BundleKind] = true
	}
	if !kinds["trust_material"] || !kinds["policy_bundle"] {
		t.Errorf("applied kinds %v, want trust_material and policy_bundle", kinds)
	}

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
	bucket, err := natstest.JetStream(t, natstest.Connect(t, c.url)).KeyValue(t.Context(), "TRUSTPLANE_BUNDLES")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bucket.Put(t.Context(), "policy-bundle", signedByIntruder(t, raw)); err != nil {
		t.Fatal(err)
	}
	events := bundleEvents(3)
	var rejected *auditMsg
	for i := range events {
		if events[i].ev.ReasonCode == reason.BundleRejected {
			rejected = &events[i]
		}
	}
	if rejected == nil {
		t.Fatal("no bundle_rejected event")
	}
	e := rejected.ev
	if rejected.subject != "trustplane.audit.bundle.bundle_rejected" || e.Accepted || e.BundleKind != "policy_bundle" ||
		e.BundleSequence != 99 || e.DetailReason == "" || len(e.BundleSHA256) != 64 {
		t.Errorf("rejected event on %s: %s", rejected.subject, rejected.data)
	}
	t.Logf("bundle_rejected event: %s", rejected.data)
	requireWhole(t, c.world, c.url)
}
