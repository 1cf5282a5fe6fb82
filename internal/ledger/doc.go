// Package ledger is the replay ledger of SPEC §7: every node of a cluster
// consumes a passport's jti exactly once, with one create-only write to a
// shared JetStream KV bucket, and keeps it until the passport can no longer
// be accepted.
//
// Ledger implements core.Ledger. Consume returns nil only when its own write
// created the key; any other result matches exactly one of core.ErrReplay
// or core.ErrLedgerUnavailable, and a caller denies on both (never allow on
// doubt). Outcomes are classified by JetStream error code, never by text.
//
// Durability (SPEC §7): JetStream acknowledges a write before it reaches
// the disk unless the server runs with sync always (--ledger-sync always).
// An R1 bucket whose server crashes can lose the keys of the last moments,
// which opens a replay window of at most one passport lifetime for those
// jtis; an R3 bucket loses an acknowledged key only if a majority of its
// servers fail together. Capacity: about 180 bytes of server memory per live
// key per replica, and live keys ≈ consume rate × mean remaining passport
// lifetime; the tpcluster.ledger.live_keys gauge shows the count.
//
// Sharded spreads the keys over several such buckets, one stream leader
// each, choosing a key's bucket by its top 64 bits (docs/LEDGER-SHARDS.md);
// during a reshard it writes into both layouts and allows only if both
// created the key.
//
// The package must not import net/http: it knows nothing of requests, only
// keys, TTLs and entries.
package ledger
