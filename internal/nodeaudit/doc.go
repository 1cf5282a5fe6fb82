// Package nodeaudit is a verifier node's side of the audit stream (SPEC §9,
// §8.2): it maps each decision (a proxy.Record) and each applied or rejected
// bundle to an audit.Event, appends it to the node's spool, and owns the
// publisher that sends the spool to JetStream.
//
// It sits between proxy and audit because audit must not import core
// (STYLE §1) and proxy must not reach NATS. It decides nothing: a decision's
// outcome and reason code are copied, never changed.
package nodeaudit
