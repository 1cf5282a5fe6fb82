package audit

import (
	"testing"
)

// FuzzChainVerifier feeds arbitrary messages (subject, signature header,
// bytes) to a verifier with one fleet member: nothing panics, and a message
// the member did not sign never counts as a valid checkpoint or passes
// without a signature problem.
func FuzzChainVerifier(f *testing.F) {
	seed := newAuditKey(f) // generated at setup
	a := chainOf(f, "node-a", 2)
	f.Add(SubjectPrefix+"deny.passport_missing", signEvent(seed, a[0]), a[0], true)
	f.Add(CheckpointSubject("", "node-a"), "", []byte(`{"version":"tpcluster-audit-checkpoint-v1","node_id":"node-a","node_seq":9,"head_sha256":"`+zeroHash+`","head_at":"2026-01-01T00:00:00Z","issued_at":"2026-01-01T00:00:00Z"}`), false)
	f.Add("trustplane.audit.checkpoint.x", "!!", []byte("{"), false)
	f.Fuzz(func(t *testing.T, subject, sig string, data []byte, signIt bool) {
		if signIt {
			ctx := eventContext
			if IsCheckpointSubject(subject) {
				ctx = checkpointContext
			}
			sig = sign(seed, ctx, data)
		}
		v := &ChainVerifier{Members: []Member{memberOf("node-a", seed, true)}}
		v.Add(Msg{StreamSeq: 1, Subject: subject, Signature: sig, Data: data})
		v.Add(Msg{StreamSeq: 2, Subject: subject, Signature: sig, Data: data})
		v.Finish()
		if signIt {
			return
		}
		for _, n := range v.Nodes() {
			if n.NodeID == "node-a" && (n.Checkpoints > 0 || (n.Events > 0 && !hasKind(v.Problems(), ProblemSignature))) {
				t.Fatalf("unsigned message accepted for node-a: %+v, problems %v", n, v.Problems())
			}
		}
	})
}

func hasKind(ps []Problem, kind string) bool {
	for _, p := range ps {
		if p.Kind == kind {
			return true
		}
	}
	return false
}
