package nodeaudit

import (
	"strings"
	"time"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/proxy"
	"github.com/tpcluster/tpcluster/internal/reason"
)

// component is every event's component field: this package only serves
// verifier nodes.
const component = "verifier"

// DecisionEvent is the audit event of one decided request (SPEC §9). The
// spool fills the node and chain fields when it appends it.
func DecisionEvent(rec *proxy.Record) *audit.Event {
	d := rec.Decision
	e := &audit.Event{
		Component:          component,
		Outcome:            d.Outcome.String(),
		Accepted:           d.Allowed(),
		ReasonCode:         d.Reason,
		RequestID:          rec.RequestID,
		RouteID:            d.RouteID,
		Audience:           d.Audience,
		Issuer:             d.Issuer,
		Subject:            d.Subject,
		JTI:                d.JTI,
		KeyBinding:         d.KeyBinding,
		RequiredKeyBinding: d.RequiredKeyBinding,
		TranscriptSHA256:   d.TranscriptSHA256,
		PolicyID:           d.PolicySHA256,
		PolicyVersion:      d.PolicySequence,
		Method:             rec.Method,
		Path:               rec.Path,
		Status:             d.Status,
		DetailCode:         d.Detail,
		LatencyUS:          rec.Latency.Microseconds(),
		BundleSequence:     d.PolicySequence,
		TraceID:            rec.TraceID,
		EventID:            rec.EventID, // set when an assertion names it; else the spool sets one
		AssertionJTI:       rec.AssertionJTI,
		AssertionKID:       rec.AssertionKID,
	}
	if eg := rec.Egress; eg != nil {
		e.EgressProvider, e.EgressGrant = eg.Provider, eg.Grant
		if eg.TokenSHA256 != "" {
			fromCache := eg.FromCache
			e.EgressScopes, e.EgressAudience = strings.Join(eg.Scopes, " "), eg.Audience
			e.EgressTokenLifetimeS = int64(eg.Lifetime / time.Second)
			e.EgressFromCache, e.EgressTokenSHA256 = &fromCache, eg.TokenSHA256
		}
	}
	if d.Err != nil {
		e.DetailReason = d.Err.Error()
	}
	return e
}

// BundleEvent is the audit event of a bundle applied or rejected (SPEC
// §8.2): code is reason.BundleApplied or reason.BundleRejected, kind the
// bundlekv spelling ("trust_material", "policy_bundle"), seq -1 when
// unknown. pair, if not nil, is the pair in force afterwards, whose policy
// the event names; detail says why a bundle was rejected.
func BundleEvent(code reason.Code, kind string, seq int64, sha string, pair *core.Snapshot, detail error) *audit.Event {
	e := &audit.Event{
		Component:      component,
		Outcome:        audit.OutcomeBundle,
		Accepted:       code == reason.BundleApplied,
		ReasonCode:     code,
		BundleKind:     kind,
		BundleSequence: seq,
		BundleSHA256:   sha,
	}
	if pair != nil && pair.Policy != nil {
		e.PolicyID, e.PolicyVersion = pair.Policy.SHA256, pair.Policy.Sequence
	}
	if detail != nil {
		e.DetailReason = detail.Error()
	}
	return e
}
