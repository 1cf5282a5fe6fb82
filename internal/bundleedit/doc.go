// Package bundleedit prepares policy bundles (trustplane-bundle-v1) and trust
// material (trustplane-trust-material-v1) offline, for cmd/bundlepub (SPEC
// §10.3): it builds both documents from a small authoring config, adds and
// removes a client's key and the source rules admitting it, sets sequence and
// issued_at, signs, and checks a document as a verifier would.
//
// Edits decode a document into a tree that keeps member order and every
// member it does not touch, change what was asked, and encode it again; the
// result is checked with internal/bundle before it is returned, so an edit
// never produces a document a verifier would refuse. Edited documents are
// unsigned: signing (with a higher sequence, SPEC §5.3) is a separate step,
// so the bundle-signing key never has to be where documents are edited.
//
// It holds no global state and does no I/O beyond reading the public key
// files an authoring config names; it imports the standard library and the
// project's bundle, keyfile and signerclass, never NATS, net/http or a logger.
package bundleedit
