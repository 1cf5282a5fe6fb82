// Package transcript implements trustplane-transcript-v1 (SPEC §3): the twenty
// canonical lines that bind a passport to one exact HTTP request, their
// SHA-256 digest, the rfc3986-sort-keys-values query normalisation, and the
// verifier's search for the header set a caller covered (SPEC §3.4).
//
// Callers build lines with [Canonical] or [Digest] from [Fields]; verifiers
// rebuild them from the request they received with [MatchRequest], which
// never trusts the caller's copies of any field (SPEC §4).
//
// The package is pure: it imports only the standard library, and in
// particular neither net/http (a [Request] takes a plain header map, to
// which http.Header is assignable), nor NATS, nor a logger. It holds no
// mutable global state besides a sync.Pool of scratch buffers, and every
// function is safe for concurrent use.
package transcript
