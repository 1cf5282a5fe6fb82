// Package backendjwt verifies TrustPlane backend assertions: the per-request
// JWS that verifierd sends upstream in X-TrustPlane-Assertion when a route
// asks for one (docs/BACKEND-JWT.md). An upstream imports it to verify,
// with the fleet's JWKS, that a request came through a TrustPlane decision
// for it: the signature, the issuer, its own audience, the validity window
// and, optionally, that the request it received is the one that was
// decided (method, target, transcript digest).
//
// An assertion is a downstream artifact, never a caller credential:
// verifierd does not accept one in place of a passport.
package backendjwt

// Header is the request header that carries the assertion.
const Header = "X-TrustPlane-Assertion"

// Type is the JWS header typ of an assertion: a JWT profile of its own, so
// that no other JWT the fleet signs can be mistaken for one (RFC 8725 §3.11).
const Type = "tp-assertion+jwt"

// Claims are an assertion's claims. Times are Unix seconds.
type Claims struct {
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"`
	Audience  string `json:"aud"` // the route's backend audience
	IssuedAt  int64  `json:"iat"`
	NotBefore int64  `json:"nbf"`
	ExpiresAt int64  `json:"exp"`
	ID        string `json:"jti"` // the assertion's own id, unique per request

	PassportJTI      string `json:"passport_jti"`
	RouteID          string `json:"route_id"`
	Method           string `json:"method"`
	Target           string `json:"target"`            // raw path and query, as forwarded
	TranscriptSHA256 string `json:"transcript_sha256"` // lowercase hex
	KeyBinding       string `json:"key_binding"`       // the effective signer class
	TrustDomain      string `json:"trust_domain"`
	EventID          string `json:"event_id"`   // the audit event of the decision
	RequestID        string `json:"request_id"` // the decision's X-Request-Id
}
