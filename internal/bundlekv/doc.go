// Package bundlekv is the bundle channel of SPEC §8 on a JetStream KV bucket.
//
// A Publisher (bundlepub publish) verifies signed trust material and policy
// bundle files exactly as a verifier would, refuses a sequence that does not
// rise, puts each document's exact bytes under its key, and keeps signed
// freshness beacons flowing (§8.1, §8.3).
//
// A Watcher (verifierd in NATS mode) watches the bucket, verifies every
// document and beacon, refuses rollbacks and bad signatures while keeping the
// last good pair, swaps the verified pair in atomically, reconciles with
// direct reads, keeps the last good pair on disk for the next start, and
// answers fleet status requests on trustplane.status (§8.2, §10.3).
//
// The package must not import internal/core (STYLE §1): a Watcher serves a
// *bundle.Snapshot, the very type core decides on (core.Snapshot is an alias).
package bundlekv
