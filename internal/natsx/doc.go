// Package natsx holds what every tpcluster component needs from NATS: an
// embedded nats-server with JetStream (SPEC §10.1), a client connection with
// the options a long-lived node wants, a bounded drain for shutdown, and
// JetStream error classification by code.
//
// It knows nothing about tpcluster's decisions: it must not import
// internal/core or any package that does. Components build their own streams
// and buckets on top of it (internal/ledger, internal/audit, internal/bundlekv).
//
// Package natstest runs real servers for tests; there are no fakes.
package natsx
