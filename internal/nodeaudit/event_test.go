package nodeaudit

import (
	"errors"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/proxy"
	"github.com/tpcluster/tpcluster/internal/reason"
)

func TestDecisionEvent(t *testing.T) {
	base := core.Decision{
		RouteID: "orders.get", Audience: "https://api.example", Issuer: "iss", Subject: "sub",
		JTI: "j1", KeyBinding: "software", RequiredKeyBinding: "software", TranscriptSHA256: "ts",
		PolicySHA256: "pp", PolicySequence: 9,
	}
	allow, deny := base, base
	allow.Outcome, allow.Reason, allow.Status = core.Allow, reason.Allowed, 200
	deny.Outcome, deny.Reason, deny.Status = core.Deny, reason.JTIReplay, 409
	deny.Err, deny.Detail = errors.New("jti already consumed"), reason.DetailJTIConsumed
	for _, tt := range []struct {
		name         string
		d            core.Decision
		wantOutcome  string
		wantAccepted bool
		wantDetail   string
		wantCode     reason.Detail
	}{
		{"allow", allow, audit.OutcomeAllow, true, "", ""},
		{"deny", deny, audit.OutcomeDeny, false, "jti already consumed", reason.DetailJTIConsumed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := &proxy.Record{Decision: &tt.d, RequestID: "r1", Method: "GET", Path: "/v1/orders/1", Latency: 1500 * time.Microsecond, TraceID: "tr"}
			e := DecisionEvent(rec)
			if e.Outcome != tt.wantOutcome || e.Accepted != tt.wantAccepted || e.ReasonCode != tt.d.Reason || e.Status != tt.d.Status || e.DetailReason != tt.wantDetail {
				t.Errorf("DecisionEvent(%s) = outcome %q accepted %v reason %q status %d detail %q; want %q %v %q %d %q",
					tt.name, e.Outcome, e.Accepted, e.ReasonCode, e.Status, e.DetailReason, tt.wantOutcome, tt.wantAccepted, tt.d.Reason, tt.d.Status, tt.wantDetail)
			}
			if e.DetailCode != tt.wantCode {
				t.Errorf("DecisionEvent(%s) detail_code = %q, want %q", tt.name, e.DetailCode, tt.wantCode)
			}
			want := audit.Event{
				Component: "verifier", RequestID: "r1", RouteID: "orders.get", Audience: "https://api.example",
				Issuer: "iss", Subject: "sub", JTI: "j1", KeyBinding: "software", RequiredKeyBinding: "software",
				TranscriptSHA256: "ts", PolicyID: "pp", PolicyVersion: 9, BundleSequence: 9,
				Method: "GET", Path: "/v1/orders/1", LatencyUS: 1500, TraceID: "tr",
			}
			got := *e
			got.Outcome, got.Accepted, got.ReasonCode, got.Status, got.DetailReason, got.DetailCode = "", false, "", 0, "", ""
			if got != want {
				t.Errorf("DecisionEvent(%s) fields:\n got %+v\nwant %+v", tt.name, got, want)
			}
		})
	}
}

func TestBundleEvent(t *testing.T) {
	pair := &core.Snapshot{Policy: &bundle.Policy{Sequence: 4, SHA256: "pp"}, Trust: &bundle.TrustMaterial{Sequence: 2, SHA256: "tt"}}
	for _, tt := range []struct {
		name string
		e    *audit.Event
		want audit.Event
	}{
		{"applied", BundleEvent(reason.BundleApplied, "trust_material", 2, "tt", pair, nil), audit.Event{
			Component: "verifier", Outcome: audit.OutcomeBundle, Accepted: true, ReasonCode: reason.BundleApplied,
			BundleKind: "trust_material", BundleSequence: 2, BundleSHA256: "tt", PolicyID: "pp", PolicyVersion: 4,
		}},
		{"rejected", BundleEvent(reason.BundleRejected, "policy_bundle", -1, "", nil, errors.New("signature invalid")), audit.Event{
			Component: "verifier", Outcome: audit.OutcomeBundle, Accepted: false, ReasonCode: reason.BundleRejected,
			BundleKind: "policy_bundle", BundleSequence: -1, DetailReason: "signature invalid",
		}},
	} {
		if *tt.e != tt.want {
			t.Errorf("BundleEvent(%s):\n got %+v\nwant %+v", tt.name, *tt.e, tt.want)
		}
	}
}
