// Package keyfile reads and writes the Ed25519 key files of SPEC §10.3
// (trustplane-key-v1): NAME.pub, mode 0644, holding a key id and a public key,
// and NAME.key, mode 0600, holding the same members plus the 32-byte seed.
//
// Every binary that takes a key flag reads keys through this package, so the
// rules live in one place: parsing is strict (no unknown or duplicate members,
// canonical unpadded base64url of exactly 32 bytes, version and alg checked),
// a private key file that group or others may access is refused, and a
// private key never prints, formats or marshals its seed.
//
// It imports only the standard library; in particular not log/slog, so
// PrivateKey redacts itself through String, GoString, Format and MarshalJSON,
// which are what slog's handlers call (see TestPrivateKeyRedactedInSlog).
package keyfile
