// Package loadgen is tpcluster's load generator: it signs a pool
// of requests before any clock starts, sends them to loopback targets in
// open loop (a fixed arrival rate, latency counted from each request's due
// time, so a stalled server cannot hide behind its own slowness) or closed
// loop (a fixed number of workers as fast as answers come), and reports
// throughput, HDR latency percentiles, outcomes by reason code against what
// each request's kind calls for, errors, and the CPU time of the processes
// under test per 1,000 decisions. It also measures the crypto ceiling (two
// ed25519.Verify per decision) and runs the plain reverse proxy and demo
// upstream the bench compares verifierd with. With nats-servers' monitoring
// URLs it reads their counters before and after a run (messages, JetStream
// API requests, the streams that ran, each client's messages), and RunOps
// runs the same schedule around an operation of the caller's (the NATS
// floor, internal/natsfloor, which keeps NATS out of this package).
//
// It only ever talks to loopback addresses, it never imports the verifier
// pipeline (internal/core), and it holds no state between runs.
package loadgen
