// Package audit records every verifier decision and bundle change as an audit
// event (SPEC §9) and delivers it to the TRUSTPLANE_AUDIT stream on NATS
// JetStream without losing one.
//
// An event is appended to a Spool, a write-ahead log of append-only segment
// files on local disk, before the decision's response is sent; the append
// also links it into the node's hash chain (node_seq, prev_event_sha256). A
// Publisher goroutine sends the log, in order, to
// trustplane.audit.<outcome>.<reason_code> with Nats-Msg-Id set to the event
// id, and trims segments JetStream has acknowledged. A decision never waits
// for NATS: while NATS is down the log grows, and when it is full Room
// reports false, so the pipeline denies audit_unavailable (SPEC §6 step 18a).
//
// Durability: every append is one write(2), so a process crash (kill -9)
// loses nothing; segments are fsynced in batches (Config.SyncInterval), so an
// operating system crash or power loss can lose at most the events appended
// since the last batch. The publisher sends only fsynced events, so an event
// lost that way was never in JetStream either, and the restarted node's
// chain continues without a fork.
//
// Tamper evidence (docs/AUDIT.md): with a SignKey the Publisher signs
// every event (SignatureHeader, over the exact message bytes, so the chain
// is unchanged) and publishes signed Checkpoints of the acknowledged chain
// head. VerifyStream checks a stream against a fleet of Members: their
// signatures, every chain, every checkpoint's events, and the stream's state
// against its retention limits (CheckStream), so a forged node, a changed
// or deleted event and a purge are all reported, naming the node.
//
// The package must not import internal/core: verifierd maps decisions to
// events. It imports reason, natsx, nats.go, slog and the OpenTelemetry API.
package audit
