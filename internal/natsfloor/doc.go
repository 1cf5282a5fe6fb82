// Package natsfloor is the NATS floor behind tpload nats-floor: the
// JetStream work one decision of a verifier node needs, done with nothing
// else, so that the nats-servers' CPU per decision under tpcluster can be
// compared with NATS's own price for the same work (docs/PERFORMANCE.md,
// "The NATS cost against its floor"). One raw pair is a create-only put
// with the ledger's TTL into a copy of the replay ledger's bucket and one
// event, with the audit publisher's headers, into a copy of the audit
// stream; both copies are made from the streams as the servers hold them,
// led by the originals' leaders, and deleted after the run.
//
// It is a benchmark tool: it never touches the real streams' messages,
// needs the admin role (it creates and deletes streams), and shares no code
// with the verifier's ledger or audit publisher, which it is measured
// against. The schedule, latency and CPU figures are internal/loadgen's.
package natsfloor
