package core

import "github.com/tpcluster/tpcluster/internal/bundle"

// Request is an HTTP request as the verifier received it, reduced to what the
// pipeline needs. Adapters fill it from the wire and never from the caller's
// claims about the wire (SPEC §4).
type Request struct {
	Method    string
	Scheme    string // "http" or "https", from the connection or a trusted proxy
	Authority string // the Host the request arrived with
	RawPath   string // the path exactly as sent in the request target
	RawQuery  string // the query exactly as sent, without "?"

	// Header holds every request header; http.Header is assignable to it.
	// Adapters remove the headers they consumed themselves (check mode's
	// X-Original-*) so they are never taken for covered headers.
	Header map[string][]string

	// Body is the body exactly as received, when BodyTooLarge is false.
	Body []byte
	// BodyTooLarge reports that the body exceeded the adapter's limit; the
	// request is denied request_body_too_large at step 17.
	BodyTooLarge bool
	// BodyFromGateway reports that the original request had a body that did
	// not reach the verifier (a gateway such as nginx auth_request sends
	// none). Routes with body_hash_from_gateway then take the caller's
	// X-TrustPlane-Body-SHA256 as the body hash; other routes deny
	// request_binding_mismatch, since nothing binds that body (SPEC §10.2).
	// False means Body is the whole body (empty for a bodiless request).
	BodyFromGateway bool
	// MustBeCovered, if set, names headers that change what an upstream
	// does (X-HTTP-Method-Override, ...) and that a gateway forwards as
	// they are: one present and not covered by the transcript is denied
	// request_binding_mismatch at step 17, unless the route sets
	// keep_override_headers. If nil, no header must be covered.
	MustBeCovered func(name string) bool
}

// Snapshot is the view of policy a decision uses (SPEC §8.2). It is
// bundle.Snapshot itself, not a copy, so the bundle sources, which must not
// import core, hand theirs to the pipeline as they are.
type Snapshot = bundle.Snapshot
