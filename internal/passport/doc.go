// Package passport parses and verifies passport-v1 tokens (SPEC §2): compact
// JWS, EdDSA (Ed25519) only, with the TrustPlane claim set.
//
// Parse does every structural check of SPEC §6 step 7 and nothing else: it
// never looks a key up and never reads a clock. Token.VerifySignature is step
// 9, with a key the caller chose from its trust material; Claims.CheckTime is
// step 10. Every Parse failure wraps ErrMalformed.
//
// Parsing is on the request hot path, so the package has its own compact JWS
// reader and a minimal strict JSON scanner instead of reflection-based
// decoding: parsing an ordinary passport costs two allocations (the Token
// and one string holding all its text). go-jose is used only by the tests, as
// a differential oracle.
//
// The package must not import net/http, NATS, a logger or go-jose. Its
// errors never echo the token or any part of it, and a Token formats itself
// redacted, because a passport is a bearer credential that must never reach
// a log.
package passport
