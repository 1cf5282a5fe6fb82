// Package reason holds the closed set of decision reason codes of SPEC §6 and the
// bundle event codes of SPEC §8.2, each with the HTTP status a verifier answers.
//
// Reason codes are the vocabulary callers, audit consumers and metrics share; they
// are stable wire values. Nothing outside this package creates a Code from an
// arbitrary string: a new code is a new constant and a new row in statusOf, in the
// same commit as the SPEC (or docs/SPEC-EXTENSIONS.md) change that names it.
package reason

// Code is a stable decision reason (SPEC §6).
type Code string

// Request decision codes, in SPEC §6 pipeline order.
const (
	RequestPathNoncanonical  Code = "request_path_noncanonical"
	PassportMissing          Code = "passport_missing"
	BundlePolicyMissing      Code = "bundle_policy_missing"
	BundleRouteMissing       Code = "bundle_route_missing"
	BundleFreshnessUnknown   Code = "bundle_freshness_unknown"
	StaleBundleFailClosed    Code = "stale_bundle_fail_closed"
	PassportMalformed        Code = "passport_malformed"
	PassportKeyUnknown       Code = "passport_key_unknown"
	PassportSignatureInvalid Code = "passport_signature_invalid"
	PassportExpired          Code = "passport_expired"
	PassportNotYetValid      Code = "passport_not_yet_valid"
	PassportLifetimeExceeded Code = "passport_lifetime_exceeded"
	AudienceMismatch         Code = "audience_mismatch"
	// AudienceRegionMismatch: the audience is bound to another region
	// (step 11a, [ours], docs/SPEC-EXTENSIONS.md).
	AudienceRegionMismatch    Code = "audience_region_mismatch"
	SourceIssuerMismatch      Code = "source_issuer_mismatch"
	SourceTrustDomainMismatch Code = "source_trust_domain_mismatch"
	SourceSubjectMismatch     Code = "source_subject_mismatch"
	InsufficientKeyBinding    Code = "insufficient_key_binding"
	MissingProvenance         Code = "missing_provenance"
	ProvenanceMismatch        Code = "provenance_mismatch"
	MissingContext            Code = "missing_context"
	ContextMismatch           Code = "context_mismatch"
	PassportRevoked           Code = "passport_revoked"
	InvalidRequestProof       Code = "invalid_request_proof"
	RequestBodyTooLarge       Code = "request_body_too_large"
	RequestBindingMismatch    Code = "request_binding_mismatch"
	AuditUnavailable          Code = "audit_unavailable"
	JTIReplay                 Code = "jti_replay"
	ReplayLedgerUnavailable   Code = "replay_ledger_unavailable"
	Allowed                   Code = "allowed"

	// GatewayNotTrusted is check mode's answer to a peer outside --trusted-proxies,
	// before step 1 (SPEC §6, §10.2).
	GatewayNotTrusted Code = "gateway_not_trusted"

	// VerifierOverloaded: the node's request body memory (--max-body-memory-bytes)
	// has no room for this body; the request is refused before any check,
	// and may be retried ([ours], docs/SPEC-EXTENSIONS.md).
	VerifierOverloaded Code = "verifier_overloaded"

	// BackendAssertionUnavailable: the route asks for a backend assertion
	// and the node has no usable key to mint it; the request is not
	// forwarded without it ([ours], docs/SPEC-EXTENSIONS.md,
	// docs/BACKEND-JWT.md).
	BackendAssertionUnavailable Code = "backend_assertion_unavailable"

	// EgressTokenUnavailable: the route bridges to a provider's OAuth and
	// no acceptable token could be had (provider down, slow, refusing, or
	// answering outside the route's limits; or check mode, which does not
	// bridge); the request is not forwarded ([ours],
	// docs/SPEC-EXTENSIONS.md, docs/OAUTH-EGRESS.md).
	EgressTokenUnavailable Code = "egress_token_unavailable"
)

// Bundle event codes (SPEC §8.2). They carry no HTTP status.
const (
	BundleApplied  Code = "bundle_applied"
	BundleRejected Code = "bundle_rejected"
)

// statusOf is the one table of HTTP statuses (SPEC §6). Bundle event codes are
// absent on purpose.
var statusOf = map[Code]int{
	RequestPathNoncanonical:   400,
	PassportMissing:           401,
	BundlePolicyMissing:       503,
	BundleRouteMissing:        404,
	BundleFreshnessUnknown:    503,
	StaleBundleFailClosed:     503,
	PassportMalformed:         401,
	PassportKeyUnknown:        401,
	PassportSignatureInvalid:  401,
	PassportExpired:           401,
	PassportNotYetValid:       401,
	PassportLifetimeExceeded:  401,
	AudienceMismatch:          403,
	AudienceRegionMismatch:    403,
	SourceIssuerMismatch:      403,
	SourceTrustDomainMismatch: 403,
	SourceSubjectMismatch:     403,
	InsufficientKeyBinding:    403,
	MissingProvenance:         403,
	ProvenanceMismatch:        403,
	MissingContext:            403,
	ContextMismatch:           403,
	PassportRevoked:           403,
	InvalidRequestProof:       401,
	RequestBodyTooLarge:       413,
	RequestBindingMismatch:    401,
	AuditUnavailable:          503,
	JTIReplay:                 409,
	ReplayLedgerUnavailable:   503,
	Allowed:                   200,
	GatewayNotTrusted:         403,
	VerifierOverloaded:        503,

	BackendAssertionUnavailable: 503,
	EgressTokenUnavailable:      502,
}

// Status returns the HTTP status SPEC §6 gives c, and false for a code that has
// none (the bundle event codes). A caller that gets false for a request decision
// has a bug and must answer 500, never allow.
func (c Code) Status() (int, bool) {
	s, ok := statusOf[c]
	return s, ok
}

// HTTPStatus is Status without the flag: 500 for a code with no status.
func (c Code) HTTPStatus() int {
	if s, ok := statusOf[c]; ok {
		return s
	}
	return 500
}

// String returns the wire form.
func (c Code) String() string { return string(c) }

// RequestCodes returns every request decision code (those with an HTTP status),
// in no particular order. It allocates; it is for tests, docs and metric set-up.
func RequestCodes() []Code {
	out := make([]Code, 0, len(statusOf))
	for c := range statusOf {
		out = append(out, c)
	}
	return out
}

// All returns every code, request and bundle event codes alike.
func All() []Code {
	return append(RequestCodes(), BundleApplied, BundleRejected)
}
