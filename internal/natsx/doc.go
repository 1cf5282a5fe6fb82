// Package natsx holds what every tpcluster component needs from NATS: an
// embedded nats-server with JetStream (SPEC §10.1), optionally running a
// configuration such as internal/natsauth's accounts; the client's
// credential and TLS flags (ClientAuth: --nats-creds, --nats-ca,
// --nats-cert, --nats-key), checked once at start; a client connection with
// the options a long-lived node wants, whose refused TLS or credential is a
// permanent ConnectError; a bounded drain for shutdown; and JetStream error
// classification by code.
//
// It knows nothing about tpcluster's decisions: it must not import
// internal/core or any package that does. Components build their own streams
// and buckets on top of it (internal/ledger, internal/audit, internal/bundlekv).
//
// Package natstest runs real servers for tests; there are no fakes.
package natsx
