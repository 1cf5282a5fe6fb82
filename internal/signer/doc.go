// Package signer is the caller side of TrustPlane request proofs: it mints
// self-issued "software" passports (passport-v1, SPEC §2) byte for byte as
// the public Python SDK's issue_passport does, and signs requests
// (transcript-v1, SPEC §3) as its sign_request and ProtectedClient do.
//
// It exists for tests, the load generator and the demo; a verifier never
// uses it. It imports the standard library and internal/transcript only,
// never core or NATS. [Client] describes what real HTTP client libraries add
// to a signed request without covering it, so tests can send requests
// shaped like theirs (SPEC §3.4).
package signer
