package reason

// Detail is a stable sub-reason of a denial ([ours], docs/SPEC-EXTENSIONS.md,
// "Detail codes"): which check of a step refused the request, never a value
// from it. A Code answers the caller; a Detail helps an operator find why, in
// the audit event (detail_code), the debug log and tpaudit. Like Code, the set
// is closed: a new detail is a new constant and a row in detailOf, in the same
// commit as the documentation that names it.
type Detail string

// Detail codes, in SPEC §6 pipeline order. The reason code each belongs to is
// in detailOf.
const (
	DetailPath        Detail = "path"         // the path is not canonical (step 1)
	DetailQuery       Detail = "query"        // '#' or a leading '?' in the query (step 1)
	DetailQueryStrict Detail = "query_strict" // a query_strict route refuses the query (step 4a)

	DetailBearerMissing Detail = "bearer_missing" // no Authorization: Bearer (step 2)
	DetailNoPair        Detail = "no_pair"        // no verified policy and trust material (step 3)
	DetailNoRoute       Detail = "no_route"       // no route matches method and path (step 4)

	DetailFreshnessClass Detail = "freshness_class" // the route's freshness class is unknown (step 5)
	DetailViewAge        Detail = "view_age"        // the policy view is older than the route's class allows (step 6)

	DetailAuthorizationRepeated Detail = "authorization_repeated" // more than one Authorization header (step 7)
	DetailJWS                   Detail = "jws"                    // the passport does not parse (step 7)
	DetailIssuerKey             Detail = "issuer_key"             // no active key for the issuer and kid (step 8)
	DetailSignature             Detail = "signature"              // a signature does not verify (steps 9, 18)
	DetailExpired               Detail = "expired"                // exp + skew has passed (step 10)
	DetailNotYetValid           Detail = "not_yet_valid"          // iat or nbf is in the future (step 10)
	DetailLifetime              Detail = "lifetime"               // exp - iat exceeds the maximum (step 10)
	DetailAudience              Detail = "audience"               // aud differs from the route's (step 11)
	DetailRegion                Detail = "region"                 // the audience is bound to another region (step 11a)

	DetailIssuer      Detail = "issuer"       // no source admits the issuer (step 12)
	DetailTrustDomain Detail = "trust_domain" // the source's trust domain differs (step 12)
	DetailSubject     Detail = "subject"      // the source admits no such subject (step 12)
	DetailKeyBinding  Detail = "key_binding"  // the effective signer class is below the minimum (step 13)
	DetailProvenance  Detail = "provenance"   // a required provenance member is missing or differs (step 14)
	DetailContext     Detail = "context"      // a required ctx member is missing or differs (step 14)
	DetailRevocation  Detail = "revocation"   // a revocation lists the passport (step 15)

	DetailProofHeaders   Detail = "proof_headers"   // a proof header is missing, repeated or malformed (step 16)
	DetailBodySize       Detail = "body_size"       // the body exceeds --max-body-bytes (step 17)
	DetailBodyHash       Detail = "body_hash"       // the body's SHA-256 differs from X-TrustPlane-Body-SHA256 (step 17)
	DetailRequiredHeader Detail = "required_header" // a route's required signed header is absent (step 17)
	DetailQueryEncoding  Detail = "query_encoding"  // the query has a bad percent escape or invalid UTF-8 (step 17)
	DetailTranscript     Detail = "transcript"      // the rebuilt transcript's digest differs from the claimed one (step 17)
	DetailHeaderRepeated Detail = "header_repeated" // a covered header appears more than once (step 17)
	DetailBodyUnseen     Detail = "body_unseen"     // check mode: the original body was not passed and the route does not take the gateway's hash (step 17)
	DetailOverrideHeader Detail = "override_header" // a method-override or forwarding header is present and not covered (step 17)

	DetailSpoolFull   Detail = "spool_full"   // the audit spool has no room (step 18a)
	DetailJTIConsumed Detail = "jti_consumed" // the ledger already holds the jti (step 19)
	DetailLedger      Detail = "ledger"       // the ledger did not answer or broke its contract (step 19)

	DetailUntrustedPeer Detail = "untrusted_peer" // check mode: the peer is outside --trusted-proxies
)

// detailOf is the one table of detail codes and the reason codes they refine.
// Signature refines two codes, so the table maps each detail to the set.
var detailOf = map[Detail][]Code{
	DetailPath:                  {RequestPathNoncanonical},
	DetailQuery:                 {RequestPathNoncanonical},
	DetailQueryStrict:           {RequestPathNoncanonical},
	DetailBearerMissing:         {PassportMissing},
	DetailNoPair:                {BundlePolicyMissing},
	DetailNoRoute:               {BundleRouteMissing},
	DetailFreshnessClass:        {BundleFreshnessUnknown},
	DetailViewAge:               {StaleBundleFailClosed},
	DetailAuthorizationRepeated: {PassportMalformed},
	DetailJWS:                   {PassportMalformed},
	DetailIssuerKey:             {PassportKeyUnknown},
	DetailSignature:             {PassportSignatureInvalid, InvalidRequestProof},
	DetailExpired:               {PassportExpired},
	DetailNotYetValid:           {PassportNotYetValid},
	DetailLifetime:              {PassportLifetimeExceeded},
	DetailAudience:              {AudienceMismatch},
	DetailRegion:                {AudienceRegionMismatch},
	DetailIssuer:                {SourceIssuerMismatch},
	DetailTrustDomain:           {SourceTrustDomainMismatch},
	DetailSubject:               {SourceSubjectMismatch},
	DetailKeyBinding:            {InsufficientKeyBinding},
	DetailProvenance:            {MissingProvenance, ProvenanceMismatch},
	DetailContext:               {MissingContext, ContextMismatch},
	DetailRevocation:            {PassportRevoked},
	DetailProofHeaders:          {InvalidRequestProof},
	DetailBodySize:              {RequestBodyTooLarge},
	DetailBodyHash:              {RequestBindingMismatch},
	DetailRequiredHeader:        {RequestBindingMismatch},
	DetailQueryEncoding:         {RequestBindingMismatch},
	DetailTranscript:            {RequestBindingMismatch},
	DetailHeaderRepeated:        {RequestBindingMismatch},
	DetailBodyUnseen:            {RequestBindingMismatch},
	DetailOverrideHeader:        {RequestBindingMismatch},
	DetailSpoolFull:             {AuditUnavailable},
	DetailJTIConsumed:           {JTIReplay},
	DetailLedger:                {ReplayLedgerUnavailable},
	DetailUntrustedPeer:         {GatewayNotTrusted},
}

// Refines reports whether d is a detail of code c. The empty detail refines
// no code.
func (d Detail) Refines(c Code) bool {
	for _, x := range detailOf[d] {
		if x == c {
			return true
		}
	}
	return false
}

// String returns the wire form.
func (d Detail) String() string { return string(d) }

// Details returns every detail code, in no particular order. It allocates;
// it is for tests and docs.
func Details() []Detail {
	out := make([]Detail, 0, len(detailOf))
	for d := range detailOf {
		out = append(out, d)
	}
	return out
}
