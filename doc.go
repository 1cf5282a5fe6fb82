// Package tpcluster is the root of the tpcluster module: a verifier for
// proof-bound API requests (TrustPlane passport-v1 and transcript-v1) whose
// nodes share a replay ledger, bundles and an audit stream on NATS
// JetStream. The code lives under cmd/ and internal/; this package holds
// only repository-wide tests.
package tpcluster
