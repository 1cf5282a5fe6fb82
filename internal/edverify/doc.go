// Package edverify verifies Ed25519 signatures faster than crypto/ed25519,
// with the same answers: singly, with public keys expanded once and reused
// (PublicKey), and in batches across concurrent requests (Batcher). It uses
// github.com/oasisprotocol/curve25519-voi, and it does nothing else: no
// parsing of passports or proofs, no policy, no I/O.
//
// # Single verification
//
// PublicKey.Verify accepts exactly what crypto/ed25519.Verify accepts
// (RFC 8032 §5.1.7 with the cofactorless equation, S < L required,
// non-canonical and small-order A and small-order R accepted as the standard
// library does). The tests check this on the "Taming the many EdDSAs"
// edge-case vectors, on crafted non-canonical and small-order encodings, on
// random inputs, and in FuzzVerifyVsStdlib.
//
// # Batch semantics
//
// A batch of n signatures is accepted when
//
//	[8]( [−Σ zᵢsᵢ]B + Σ [zᵢ]Rᵢ + Σ [zᵢkᵢ]Aᵢ ) = O
//
// for random 128-bit zᵢ, which with probability 1 − 2⁻¹²⁸ means each entry
// satisfies the cofactored equation [8]([sᵢ]B − Rᵢ − [kᵢ]Aᵢ) = O. This is
// the equation of ZIP-215 and of RFC 8032 §5.1.7's "sufficient, but not
// required" form; crypto/ed25519 instead checks the cofactorless
// [s]B − [k]A = R, byte for byte against R's encoding. A cofactored
// equation is needed for batching: without the [8], a torsion component
// would make the batch answer depend on the random zᵢ.
//
// Beyond the equation, ZIP-215 also accepts non-canonical encodings of A
// and R and small-order A and R. Batcher never lets those reach a batch:
// Verify sends a signature to the batch only if S < L, R is canonically
// encoded and not one of the eight small-order points, and the key (checked
// once, in NewPublicKey) is canonically encoded and not of small order;
// everything else is verified singly with the standard library's rules, and
// the batch itself runs with voi's strictest options. A failed batch is
// re-verified entry by entry with the standard library's rules, so one bad
// signature denies no other.
//
// What remains is the difference between the two equations on well-encoded
// points: the cofactored one also accepts a signature whose [s]B − [k]A − R
// is a nonzero point of order 2, 4 or 8, that is, whose R or A carries a
// torsion component. No RFC 8032 signer makes one (R = [r]B and A = [a]B lie
// in the prime-order subgroup, where a small-order difference is the
// identity), and making one requires the discrete logarithm of A's
// prime-order part: it is a signature by the key holder, never a forgery or
// a mutation of someone else's signature (k hashes R's bytes, so changing R
// changes k). Such a signature is accepted when its batch passes and refused
// when its batch fails or it is verified singly. Excluding it exactly would
// need a torsion check of R ([L]R = O, about as costly as a verification) per
// signature, which is the whole gain.
//
// Why that is safe for tpcluster: the passport signature is by a trust
// material key and the request proof by the passport's cnf key. A holder of
// either can already sign any message it likes in the ordinary way, so
// accepting its unusual signatures grants nothing it lacked; replay is
// stopped by the jti ledger, which never depends on signature bytes. The
// visible effect is limited to the key holder's own deliberately malformed
// requests, which may be allowed by a batching node and denied by a node
// verifying singly.
//
// # Adoption by core
//
// Trust material: build a PublicKey for each active key when a snapshot is
// loaded and keep it beside the raw key, so the per-request lookup by issuer
// and kid yields it directly (NewPublicKey ≈ 6 µs, once per key per
// snapshot). cnf keys: a passport's key is used for every request of that
// passport, so keep PublicKeys in a small bounded LRU keyed by the 32 key
// bytes (a few thousand entries, ≈ 1.5 KiB each); on a miss, NewPublicKey
// costs less than the expansion saves on a single verification, so parsing
// per request is still no loss. Then replace
//
//	tok.VerifySignature(key.PublicKey)             // passport, SPEC §6 step 9
//	ed25519.Verify(c.PublicKey, digest, proof.sig) // proof
//
// by key.Verify(msg, sig), or by batcher.Verify(ctx, key, msg, sig) with one
// Batcher owned by the process (its Run in main's errgroup). A false result
// keeps today's reason codes; a nil PublicKey (key failed to decode) denies
// as a failed verification does today.
package edverify
