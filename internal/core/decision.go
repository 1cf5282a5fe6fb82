package core

import (
	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/reason"
)

// Outcome is the verdict of a decision.
type Outcome uint8

// Outcomes.
const (
	Deny Outcome = iota
	Allow
)

// String returns "allow" or "deny", the audit spelling (SPEC §9).
func (o Outcome) String() string {
	if o == Allow {
		return "allow"
	}
	return "deny"
}

// Decision is the result of Decide. Fields other than Outcome, Reason and
// Status are filled as far as the pipeline got: a request denied at step 1
// carries no issuer, one denied at step 19 carries everything.
//
// KeyBinding is the effective signer class of SPEC §2.1: cnf.key_binding
// as far as the key that signed the passport may vouch for it, never the
// caller's own word. It is what X-TrustPlane-Key-Binding and the audit
// event carry, and it is empty until the passport signature verified
// (step 9).
type Decision struct {
	Outcome Outcome
	Reason  reason.Code
	Status  int // the SPEC §6 HTTP status of Reason

	RouteID            string
	Audience           string // the passport's aud
	Issuer             string
	Subject            string
	TrustDomain        string
	JTI                string
	KeyBinding         string // the effective signer class; see above
	RequiredKeyBinding string // the route's effective minimum
	TranscriptSHA256   string // lowercase hex, set once the transcript matched

	// CoveredHeaders are the lower-case header names the matched transcript
	// covers (its headers.allow_list), set with TranscriptSHA256. The proxy
	// forwards only covered override headers (docs/SPEC-EXTENSIONS.md).
	CoveredHeaders []string
	// KeepOverrideHeaders is the route's keep_override_headers.
	KeepOverrideHeaders bool

	// BackendAssertion is the matched route's backend_assertion, nil when
	// it asks for none; the proxy mints it on allow.
	BackendAssertion *bundle.BackendAssertion
	// Egress is the matched route's egress block, nil when it has none;
	// the proxy obtains the provider token on allow (docs/OAUTH-EGRESS.md).
	Egress *bundle.Egress

	// LedgerRegion is the home region whose ledger consumed (or was to
	// consume) the jti; empty for the node's own.
	LedgerRegion string

	PolicySHA256   string // policy_id of the audit event
	PolicySequence int64  // policy_version of the audit event

	// Detail is the stable sub-reason of a denial (which check refused,
	// never a value: docs/SPEC-EXTENSIONS.md, "Detail codes"), for the
	// audit event's detail_code and the debug log. Empty on allow.
	Detail reason.Detail

	// Err says why a denial happened, for operators (logs, audit
	// detail_reason). It never goes to the caller. Nil on allow.
	Err error
}

// Allowed reports whether the request may proceed.
func (d *Decision) Allowed() bool { return d.Outcome == Allow }
