package audit

import (
	"testing"
	"time"
)

// TestCheckStream: the stream's state against its limits, row by row: what
// retention explains passes (and says how), what it cannot is a problem.
func TestCheckStream(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	const day = 24 * time.Hour
	base := StreamState{MaxAge: 30 * day, MaxBytes: 1 << 30, FirstSeq: 1, LastSeq: 100, Msgs: 100, Bytes: 100 << 10,
		FirstTime: now.Add(-time.Hour), LastTime: now.Add(-time.Minute)}
	tests := []struct {
		name     string
		edit     func(*StreamState)
		trimmed  bool
		problems []string
	}{
		{name: "untouched", edit: func(*StreamState) {}},
		{name: "never written", edit: func(s *StreamState) { *s = StreamState{MaxAge: 30 * day} }},
		{name: "new stream, sequence 0 listed as deleted", edit: func(s *StreamState) {
			*s = StreamState{MaxAge: 30 * day, NumDeleted: 1, Deleted: []uint64{0}}
		}},
		{name: "inner delete", edit: func(s *StreamState) { s.NumDeleted, s.Deleted, s.Msgs = 1, []uint64{50}, 99 }, problems: []string{ProblemDeleted}},
		{name: "inner delete, no details", edit: func(s *StreamState) { s.NumDeleted, s.Msgs = 2, 98 }, problems: []string{ProblemDeleted}},
		{name: "everything aged out", edit: func(s *StreamState) {
			s.FirstSeq, s.Msgs, s.Bytes, s.FirstTime, s.LastTime = 101, 0, 0, time.Time{}, now.Add(-31*day)
		}, trimmed: true},
		{name: "purged", edit: func(s *StreamState) { s.FirstSeq, s.Msgs, s.Bytes, s.FirstTime = 101, 0, 0, time.Time{} }, problems: []string{ProblemPurged}},
		{name: "head aged out", edit: func(s *StreamState) { s.FirstSeq, s.FirstTime = 40, now.Add(-30*day+time.Minute) }, trimmed: true},
		{name: "head removed by size", edit: func(s *StreamState) { s.FirstSeq, s.Bytes = 40, 1<<30-1000 }, trimmed: true},
		{name: "head purged", edit: func(s *StreamState) { s.FirstSeq = 40 }, problems: []string{ProblemPurged}},
		{name: "head purged, no size limit", edit: func(s *StreamState) { s.FirstSeq, s.MaxBytes = 40, -1 }, problems: []string{ProblemPurged}},
		{name: "head purged and an inner delete", edit: func(s *StreamState) { s.FirstSeq, s.NumDeleted, s.Deleted = 40, 1, []uint64{60} },
			problems: []string{ProblemDeleted, ProblemPurged}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := base
			tt.edit(&st)
			v := CheckStream(st, now, time.Minute*5)
			var got []string
			for _, p := range v.Problems {
				got = append(got, p.Kind)
			}
			if v.HeadTrimmed != tt.trimmed || len(got) != len(tt.problems) {
				t.Fatalf("CheckStream(%+v) = trimmed %v, problems %v; want %v, %v", st, v.HeadTrimmed, v.Problems, tt.trimmed, tt.problems)
			}
			for i := range got {
				if got[i] != tt.problems[i] {
					t.Errorf("CheckStream problems = %v, want %v", got, tt.problems)
				}
			}
			if v.HeadTrimmed && v.Why == "" {
				t.Error("a trim explained by retention without saying how")
			}
		})
	}
}
