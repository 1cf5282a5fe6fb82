package nodeaudit

import (
	"encoding/json"
	"errors"
	"strings"
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

// TestDecisionEventEgress: an egress allow names the provider, grant,
// scopes, audience, lifetime, cache use and the token's hash; a failed
// token request names provider and grant only.
func TestDecisionEventEgress(t *testing.T) {
	d := core.Decision{Outcome: core.Allow, Reason: reason.Allowed, Status: 200, RouteID: "crm.cc"}
	rec := &proxy.Record{Decision: &d, RequestID: "r1", Egress: &proxy.EgressRecord{
		Provider: "acme", Grant: "client_credentials", Scopes: []string{"a.read", "a.list"}, Audience: "https://api.acme.example",
		Lifetime: 599 * time.Second, FromCache: false, TokenSHA256: "ab12",
	}}
	e := DecisionEvent(rec)
	if e.EgressProvider != "acme" || e.EgressGrant != "client_credentials" || e.EgressScopes != "a.read a.list" ||
		e.EgressAudience != "https://api.acme.example" || e.EgressTokenLifetimeS != 599 || e.EgressFromCache == nil ||
		*e.EgressFromCache || e.EgressTokenSHA256 != "ab12" {
		t.Errorf("egress allow event = %+v", e)
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"egress_from_cache":false`) {
		t.Errorf("a token not from the cache does not say so: %s", b)
	}

	deny := core.Decision{Outcome: core.Deny, Reason: reason.EgressTokenUnavailable, Status: 502, Detail: reason.DetailEgressToken, Err: errors.New("connection refused")}
	e = DecisionEvent(&proxy.Record{Decision: &deny, Egress: &proxy.EgressRecord{Provider: "acme", Grant: "client_credentials"}})
	if e.EgressProvider != "acme" || e.EgressGrant != "client_credentials" || e.EgressScopes != "" || e.EgressFromCache != nil ||
		e.EgressTokenSHA256 != "" || e.DetailCode != reason.DetailEgressToken || e.DetailReason != "connection refused" {
		t.Errorf("egress deny event = %+v", e)
	}
	// No egress: none of the members.
	e = DecisionEvent(&proxy.Record{Decision: &d})
	if b, _ := json.Marshal(e); strings.Contains(string(b), "egress") {
		t.Errorf("an event without egress names it: %s", b)
	}
}
