package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
)

// newAuditKey returns a fresh node audit key.
func newAuditKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func memberOf(node string, k ed25519.PrivateKey, active bool) Member {
	return Member{NodeID: node, PublicKey: k.Public().(ed25519.PublicKey), Active: active}
}

// chainOf returns n encoded events of node, chained.
func chainOf(t testing.TB, node string, n int) [][]byte {
	t.Helper()
	s := openSpool(t, SpoolConfig{Dir: t.TempDir(), NodeID: node})
	var out [][]byte
	for _, e := range appendN(t, s, 0, n) {
		b, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestChainVerifier(t *testing.T) {
	const subj = "trustplane.audit.deny.passport_missing"
	a := chainOf(t, "a", 5)
	b := chainOf(t, "b", 3)
	tests := []struct {
		name     string
		msgs     [][]byte
		subjects map[int]string // overrides by index
		trimmed  bool
		window   int
		want     []string // problem kinds, in order
	}{
		{name: "two whole chains interleaved", msgs: [][]byte{a[0], b[0], a[1], a[2], b[1], a[3], b[2], a[4]}},
		{name: "deleted", msgs: [][]byte{a[0], a[1], a[3], a[4]}, want: []string{ProblemGap}},
		{name: "altered", msgs: [][]byte{a[0], bytes.Replace(a[1], []byte("req-1"), []byte("req-X"), 1), a[2], a[3], a[4]}, want: []string{ProblemAltered}},
		{name: "stored twice", msgs: [][]byte{a[0], a[1], a[1], a[2]}, want: []string{ProblemDuplicate}},
		{name: "out of order", msgs: [][]byte{a[0], a[2], a[1], a[4], a[3]}},
		{name: "out of order and deleted", msgs: [][]byte{a[0], a[3], a[1], a[4]}, want: []string{ProblemGap}},
		{name: "deleted at the head", msgs: [][]byte{a[1], a[2]}, want: []string{ProblemHead}},
		{name: "reorder window exceeded", msgs: [][]byte{a[0], a[2], a[3], a[4], a[1]}, window: 2, want: []string{ProblemGap, ProblemDuplicate}},
		{name: "head missing", msgs: [][]byte{a[2], a[3], a[4]}, want: []string{ProblemHead}},
		{name: "head trimmed by retention", msgs: [][]byte{a[2], a[3], a[4]}, trimmed: true},
		{name: "wrong subject", msgs: [][]byte{a[0], a[1]}, subjects: map[int]string{1: "trustplane.audit.allow.allowed"}, want: []string{ProblemSubject}},
		{name: "not an event", msgs: [][]byte{a[0], []byte("{}"), a[1]}, want: []string{ProblemMalformed}},
	}
	key := newAuditKey(t)
	members := []Member{memberOf("a", key, false), memberOf("b", key, false)}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := ChainVerifier{HeadTrimmed: tt.trimmed, ReorderWindow: tt.window, Members: members}
			for i, m := range tt.msgs {
				s := subj
				if o, ok := tt.subjects[i]; ok {
					s = o
				}
				// Signed as stored, so only the chain is under test here.
				v.Add(Msg{StreamSeq: uint64(i + 1), Subject: s, Data: m, Signature: signEvent(key, m)})
			}
			v.Finish()
			var got []string
			for _, p := range v.Problems() {
				got = append(got, p.Kind)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Problems = %v, want %v (%v)", got, tt.want, v.Problems())
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("Problems = %v, want %v", got, tt.want)
				}
			}
		})
	}
}
