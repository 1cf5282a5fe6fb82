// Package core is the decision pipeline of SPEC §6: from a request as received
// to a Decision (allow, or deny with a reason code and HTTP status).
//
// It is pure and fast: it imports no HTTP server, no NATS client, no telemetry
// and no logger. What it needs from the outside world it declares as small
// interfaces (Ledger, a clock, a snapshot source); adapters such as
// internal/proxy and internal/ledger provide them.
package core
