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

	// The HTTP adapter's own refusals before the pipeline (SPEC §10.2,
	// docs/SPEC-EXTENSIONS.md "HTTP").
	DetailMethodSpelling Detail = "method_spelling" // the method is not in canonical upper case
	DetailForeignHeader  Detail = "foreign_header"  // check mode: an X-TrustPlane-* or X-Forwarded-* header no gateway owns came from the caller
	DetailBodyLength     Detail = "body_length"     // check mode: the body the gateway sent differs from X-Original-Content-Length
	DetailBodyMemory     Detail = "body_memory"     // the node's body memory (--max-body-memory-bytes) is in use

	DetailSpoolFull   Detail = "spool_full"   // the audit spool has no room (step 18a)
	DetailJTIConsumed Detail = "jti_consumed" // the ledger already holds the jti (step 19)
	DetailLedger      Detail = "ledger"       // the ledger did not answer or broke its contract (step 19)

	DetailUntrustedPeer Detail = "untrusted_peer" // check mode: the peer is outside --trusted-proxies

	// The gRPC gateway (Envoy ext_authz, docs/ENVOY.md): the message, or an
	// Envoy setting it shows missing, explains a request_binding_mismatch.
	DetailGatewayMessage        Detail = "gateway_message"          // the gateway's message describes no HTTP request
	DetailEnvoyWithRequestBody  Detail = "envoy_with_request_body"  // a body Envoy did not send (step 17)
	DetailEnvoyPartialMessage   Detail = "envoy_partial_message"    // a body Envoy cut at max_request_bytes (step 17)
	DetailEnvoyPackAsBytes      Detail = "envoy_pack_as_bytes"      // a body sent as a string whose hash differs (step 17)
	DetailEnvoyEncodeRawHeaders Detail = "envoy_encode_raw_headers" // merged headers the transcript could not be rebuilt from (step 17)

	// DetailAssertionKey: the route asks for a backend assertion and the
	// node cannot mint one (after step 19, docs/BACKEND-JWT.md).
	DetailAssertionKey Detail = "assertion_key"
	// DetailEgressToken: the provider's token endpoint failed, was too
	// slow, or answered a token outside the route's limits.
	DetailEgressToken Detail = "egress_token"
	// DetailEgressCheckMode: check mode (and the gRPC gateway) does not bridge to OAuth
	// (docs/OAUTH-EGRESS.md).
	DetailEgressCheckMode Detail = "egress_check_mode"
)

// detailRow is what the table knows of a detail code.
type detailRow struct {
	codes []Code // the reason codes it refines
	what  string // the check that refused, in words (tpaudit explain)
}

// detailOf is the one table of detail codes: the reason codes each refines
// (signature, provenance and context refine two) and the check in words.
var detailOf = map[Detail]detailRow{
	DetailPath:                  {[]Code{RequestPathNoncanonical}, "the path is not canonical"},
	DetailQuery:                 {[]Code{RequestPathNoncanonical}, "'#' or a leading '?' in the query"},
	DetailQueryStrict:           {[]Code{RequestPathNoncanonical}, "a query_strict route refuses the query"},
	DetailBearerMissing:         {[]Code{PassportMissing}, "no Authorization: Bearer"},
	DetailNoPair:                {[]Code{BundlePolicyMissing}, "no verified policy and trust material"},
	DetailNoRoute:               {[]Code{BundleRouteMissing}, "no route matches method and path"},
	DetailFreshnessClass:        {[]Code{BundleFreshnessUnknown}, "the route's freshness class is unknown"},
	DetailViewAge:               {[]Code{StaleBundleFailClosed}, "the policy view is older than the route's class allows"},
	DetailAuthorizationRepeated: {[]Code{PassportMalformed}, "more than one Authorization header"},
	DetailJWS:                   {[]Code{PassportMalformed}, "the passport does not parse"},
	DetailIssuerKey:             {[]Code{PassportKeyUnknown}, "no active key for the issuer and kid"},
	DetailSignature:             {[]Code{PassportSignatureInvalid, InvalidRequestProof}, "a signature does not verify"},
	DetailExpired:               {[]Code{PassportExpired}, "exp + skew has passed"},
	DetailNotYetValid:           {[]Code{PassportNotYetValid}, "iat or nbf is in the future"},
	DetailLifetime:              {[]Code{PassportLifetimeExceeded}, "exp - iat exceeds the maximum"},
	DetailAudience:              {[]Code{AudienceMismatch}, "aud differs from the route's"},
	DetailRegion:                {[]Code{AudienceRegionMismatch}, "the audience is bound to another region"},
	DetailIssuer:                {[]Code{SourceIssuerMismatch}, "no source admits the issuer"},
	DetailTrustDomain:           {[]Code{SourceTrustDomainMismatch}, "the source's trust domain differs"},
	DetailSubject:               {[]Code{SourceSubjectMismatch}, "the source admits no such subject"},
	DetailKeyBinding:            {[]Code{InsufficientKeyBinding}, "the effective signer class is below the minimum"},
	DetailProvenance:            {[]Code{MissingProvenance, ProvenanceMismatch}, "a required provenance member is missing or differs"},
	DetailContext:               {[]Code{MissingContext, ContextMismatch}, "a required ctx member is missing or differs"},
	DetailRevocation:            {[]Code{PassportRevoked}, "a revocation lists the passport"},
	DetailProofHeaders:          {[]Code{InvalidRequestProof}, "a proof header is missing, repeated or malformed"},
	DetailBodySize:              {[]Code{RequestBodyTooLarge}, "the body exceeds --max-body-bytes"},
	DetailBodyHash:              {[]Code{RequestBindingMismatch}, "the body's SHA-256 differs from X-TrustPlane-Body-SHA256"},
	DetailRequiredHeader:        {[]Code{RequestBindingMismatch}, "a route's required signed header is absent"},
	DetailQueryEncoding:         {[]Code{RequestBindingMismatch}, "the query has a bad percent escape or invalid UTF-8"},
	DetailTranscript:            {[]Code{RequestBindingMismatch}, "the rebuilt transcript's digest differs from the claimed one: method, host, path, query, content type, a covered header or a binding line was signed differently"},
	DetailHeaderRepeated:        {[]Code{RequestBindingMismatch}, "a covered header appears more than once"},
	DetailBodyUnseen:            {[]Code{RequestBindingMismatch}, "check mode: the original request had a body the verifier did not see, and the route does not take the gateway's body hash"},
	DetailOverrideHeader:        {[]Code{RequestBindingMismatch}, "a header that changes how the upstream reads the request (method override, forwarding) is present and not covered"},
	DetailMethodSpelling:        {[]Code{RequestBindingMismatch}, "the method is not in canonical upper case, as the transcript binds it"},
	DetailForeignHeader:         {[]Code{RequestBindingMismatch}, "check mode: an X-TrustPlane-* or X-Forwarded-* header no gateway owns came from the caller"},
	DetailBodyLength:            {[]Code{RequestBindingMismatch}, "check mode: the body the gateway sent is not as long as X-Original-Content-Length says"},
	DetailBodyMemory:            {[]Code{VerifierOverloaded}, "the node's request body memory (--max-body-memory-bytes) is in use"},
	DetailSpoolFull:             {[]Code{AuditUnavailable}, "the audit spool has no room"},
	DetailJTIConsumed:           {[]Code{JTIReplay}, "the ledger already holds the jti"},
	DetailLedger:                {[]Code{ReplayLedgerUnavailable}, "the ledger did not answer or broke its contract"},
	DetailUntrustedPeer:         {[]Code{GatewayNotTrusted}, "check mode: the peer is outside --trusted-proxies"},
	DetailGatewayMessage:        {[]Code{RequestBindingMismatch}, "the gateway's message describes no HTTP request (an Envoy CheckRequest without attributes.request.http, its method or its path)"},
	DetailEnvoyWithRequestBody:  {[]Code{RequestBindingMismatch}, "the original request had a body Envoy did not send: the ext_authz filter has no with_request_body"},
	DetailEnvoyPartialMessage:   {[]Code{RequestBindingMismatch}, "Envoy sent only the start of the body (allow_partial_message, with_request_body.max_request_bytes below --max-body-bytes)"},
	DetailEnvoyPackAsBytes:      {[]Code{RequestBindingMismatch}, "the body's SHA-256 differs and Envoy sent the body as a string: with_request_body.pack_as_bytes is not set"},
	DetailEnvoyEncodeRawHeaders: {[]Code{RequestBindingMismatch}, "the transcript could not be rebuilt from the merged headers Envoy sent (a repeated header's values joined with ','): encode_raw_headers is not set"},
	DetailAssertionKey:          {[]Code{BackendAssertionUnavailable}, "the route asks for a backend assertion and the node has no usable assertion key"},
	DetailEgressToken:           {[]Code{EgressTokenUnavailable}, "the route's provider token could not be had: its token endpoint failed, was too slow, or answered outside the route's limits"},
	DetailEgressCheckMode:       {[]Code{EgressTokenUnavailable}, "check mode or the gRPC gateway: the route bridges to a provider's OAuth, which only proxy mode does"},
}

// Refines reports whether d is a detail of code c. The empty detail refines
// no code.
func (d Detail) Refines(c Code) bool {
	for _, x := range detailOf[d].codes {
		if x == c {
			return true
		}
	}
	return false
}

// Explain says in words which check refused: "the body's SHA-256 differs
// from X-TrustPlane-Body-SHA256". Empty for an unknown detail.
func (d Detail) Explain() string { return detailOf[d].what }

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
