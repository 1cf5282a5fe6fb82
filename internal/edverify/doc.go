// Package edverify verifies Ed25519 signatures faster than crypto/ed25519,
// with the same answers: a PublicKey is decoded and expanded once and reused
// for every signature under that key. core keeps one per trust material key
// and builds one per passport cnf key (internal/core/keys.go).
//
// PublicKey.Verify accepts exactly what crypto/ed25519.Verify accepts
// (RFC 8032 §5.1.7 with the cofactorless equation, S < L required,
// non-canonical and small-order A and small-order R accepted as the standard
// library does). The tests check this on the "Taming the many EdDSAs"
// edge-case vectors, on crafted non-canonical and small-order encodings, on
// random inputs, and in FuzzVerifyVsStdlib, a differential fuzz against the
// standard library.
//
// It uses github.com/oasisprotocol/curve25519-voi, pinned in go.mod to one
// commit (a pseudo-version, checked by go.sum): a new version of it is a
// change to what tpcluster accepts as a signature, so it is taken only with
// the differential fuzz re-run. The package does nothing else: no parsing of
// passports or proofs, no policy, no I/O.
package edverify
