package audit

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCheckpointGolden pins the checkpoint bytes (docs/AUDIT.md): members,
// order and spelling are what verifiers outside this repository read.
func TestCheckpointGolden(t *testing.T) {
	c := Checkpoint{
		Version: CheckpointVersion, NodeID: "node-a:8081", Region: "eu", NodeSeq: 1234,
		HeadSHA256: strings.Repeat("ab", 32), HeadAt: "2026-12-07T19:00:00.123Z", IssuedAt: "2026-12-07T19:00:05.000Z",
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "checkpoint.golden.json", append(b, '\n'))
	back, err := DecodeCheckpoint(b)
	if err != nil || *back != c {
		t.Errorf("DecodeCheckpoint(golden) = %+v, %v; want %+v", back, err, c)
	}
}

// TestDecodeCheckpointRefuses: what DecodeCheckpoint refuses, by field.
func TestDecodeCheckpointRefuses(t *testing.T) {
	good := map[string]any{"version": CheckpointVersion, "node_id": "a", "node_seq": 1, "head_sha256": zeroHash,
		"head_at": "2026-12-07T19:00:00Z", "issued_at": "2026-12-07T19:00:00Z"}
	tests := []struct {
		name, field string
		value       any
	}{
		{"other version", "version", "tpcluster-audit-checkpoint-v0"},
		{"no node", "node_id", ""},
		{"node_seq 0", "node_seq", 0},
		{"short hash", "head_sha256", "abc"},
		{"upper-case hash", "head_sha256", strings.ToUpper(strings.Repeat("ab", 32))},
		{"bad issued_at", "issued_at", "yesterday"},
		{"bad head_at", "head_at", "2026-13-01T00:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := map[string]any{}
			for k, v := range good {
				m[k] = v
			}
			m[tt.field] = tt.value
			b, _ := json.Marshal(m)
			if _, err := DecodeCheckpoint(b); err == nil {
				t.Errorf("DecodeCheckpoint(%s) = nil error, want a refusal", b)
			}
		})
	}
	b, _ := json.Marshal(good)
	if _, err := DecodeCheckpoint(b); err != nil {
		t.Errorf("DecodeCheckpoint(good) = %v", err)
	}
}

// TestCheckpointSubject: one subject token per node id whatever it holds,
// under the region's prefix for a region's node.
func TestCheckpointSubject(t *testing.T) {
	a, b := CheckpointSubject("", "node-a:8081"), CheckpointSubject("", "node.b *>")
	if !strings.HasPrefix(a, SubjectPrefix+"checkpoint.") || strings.Count(a, ".") != 3 || strings.Count(b, ".") != 3 || strings.ContainsAny(b, " *>") {
		t.Errorf("CheckpointSubject = %q, %q: want trustplane.audit.checkpoint.<one token>", a, b)
	}
	if r := CheckpointSubject("eu", "node-a:8081"); !strings.HasPrefix(r, RegionSubjectPrefix("eu")+"checkpoint.") {
		t.Errorf("region checkpoint subject %q", r)
	}
	for subj, want := range map[string]bool{
		a: true, CheckpointSubject("eu", "x"): true, "copy.audit.checkpoint.ff": true,
		SubjectPrefix + "deny.passport_missing": false, SubjectPrefix + "checkpoint": false, "checkpoint.x": false,
	} {
		if got := IsCheckpointSubject(subj); got != want {
			t.Errorf("IsCheckpointSubject(%q) = %v, want %v", subj, got, want)
		}
	}
}
