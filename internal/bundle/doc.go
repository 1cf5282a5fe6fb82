// Package bundle loads the documents that configure a verifier: policy
// bundles (trustplane-bundle-v1, SPEC §5.1, §5.3) and trust material
// (trustplane-trust-material-v1, §5.2), signed with the JCS + Ed25519
// envelope of §5.4. It resolves requests to routes (§5.1), looks up passport
// keys (§2) and applies the freshness rules of §8.3.
//
// Parsing is strict, because a restriction we misread is a restriction we
// do not enforce: duplicate member names are refused at every level,
// unknown members are refused (see ParsePolicy), numbers are read exactly,
// and an error names the offending field by its path in the document.
// Signatures are checked before the schema is interpreted, and keys have
// one Go type per role (SigningKey, VerifyKey for bundles) so one role's
// key cannot be passed where another's belongs.
//
// It is pure: it imports the standard library, github.com/gowebpki/jcs and
// the project's signerclass and keyfile, and never net/http, NATS or a
// logger; fetching and watching documents is internal/bundlekv's job.
// Loaded documents are immutable and safe for concurrent use.
package bundle
