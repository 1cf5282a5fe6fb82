package audit

import (
	"fmt"
	"time"
)

// DefaultRetentionSlack is CheckStream's allowance for how long a
// stream's oldest message may outlive the moment age retention could have
// removed its predecessor: the checkpoint interval (every node stores a
// message at least that often), the server's expiry lag and clock skew.
const DefaultRetentionSlack = 5 * time.Minute

// retentionSizeSlack is how far below max_bytes a stream trimmed by size
// may sit: size retention removes the oldest messages until the new one
// fits, so the stream stays within one message (an event is a few KiB) of
// its limit.
const retentionSizeSlack = 64 << 10

// StreamState is what CheckStream reads of the audit stream: its limits
// and state (jetstream.StreamInfo Config and State).
type StreamState struct {
	MaxAge              time.Duration // 0: no age limit
	MaxBytes            int64         // 0 or -1: no size limit
	FirstSeq, LastSeq   uint64
	FirstTime, LastTime time.Time
	Msgs, Bytes         uint64
	NumDeleted          int      // messages deleted inside FirstSeq..LastSeq
	Deleted             []uint64 // their sequences, if known
}

// RetentionVerdict is CheckStream's finding: whether the stream lost
// messages at its head and whether its limits explain that, and the
// problems retention cannot explain.
type RetentionVerdict struct {
	// HeadTrimmed: messages before FirstSeq were removed by retention,
	// so chains may start late (ChainVerifier.HeadTrimmed).
	HeadTrimmed bool
	// RetainedFrom: events appended before it may be gone
	// (ChainVerifier.RetainedFrom).
	RetainedFrom time.Time
	// Why says how the head loss was explained, for the report.
	Why      string
	Problems []Problem
}

// CheckStream tells retention from tampering by the stream's own state
// (docs/AUDIT.md). Retention by age or size only ever removes a stream's
// oldest messages:
//   - by age, a message goes once it is older than MaxAge; every node
//     stores a checkpoint at least every interval, so after an age trim
//     the oldest message left is itself within slack of MaxAge;
//   - by size, the oldest go until the stream fits MaxBytes, so it holds
//     nearly MaxBytes;
//   - neither empties a stream whose newest message is younger than
//     MaxAge, nor deletes a message in the middle.
//
// Anything else (a purge, a purge of a prefix, a deleted message) is a
// problem. A zero slack means DefaultRetentionSlack.
func CheckStream(st StreamState, now time.Time, slack time.Duration) RetentionVerdict {
	if slack <= 0 {
		slack = DefaultRetentionSlack
	}
	var v RetentionVerdict
	deleted, inside := st.NumDeleted, st.Deleted[:0:0]
	for _, d := range st.Deleted {
		if d != 0 && st.FirstSeq <= d && d <= st.LastSeq {
			inside = append(inside, d)
		}
	}
	if st.Deleted != nil {
		// The details are exact; the server has been seen to count a
		// sequence 0 in a new, empty stream.
		deleted = len(inside)
	}
	if st.LastSeq == 0 {
		deleted = 0
	}
	if deleted > 0 {
		which := ""
		if len(inside) > 0 {
			shown := inside[:min(len(inside), 20)]
			which = fmt.Sprintf(" (stream seq %v", shown)
			if len(shown) < len(inside) {
				which += " ..."
			}
			which += ")"
		}
		v.Problems = append(v.Problems, Problem{Kind: ProblemDeleted,
			Detail: fmt.Sprintf("%d messages deleted between stream seq %d and %d%s: retention removes only the oldest", deleted, st.FirstSeq, st.LastSeq, which)})
	}
	ageOK := func(t time.Time) bool { return st.MaxAge > 0 && !t.After(now.Add(-st.MaxAge).Add(slack)) }
	switch {
	case st.LastSeq == 0:
		// Never held a message.
	case st.Msgs == 0:
		if ageOK(st.LastTime) {
			v.HeadTrimmed, v.RetainedFrom = true, now
			v.Why = fmt.Sprintf("every message aged out (the last stored %s, max_age %s)", Timestamp(st.LastTime), st.MaxAge)
			break
		}
		v.Problems = append(v.Problems, Problem{Kind: ProblemPurged, StreamSeq: st.LastSeq,
			Detail: fmt.Sprintf("stream empty, stream seq 1..%d gone, though its last message (stored %s) is younger than max_age %s and size retention never empties a stream: purged",
				st.LastSeq, Timestamp(st.LastTime), st.MaxAge)})
	case st.FirstSeq > 1:
		bySize := st.MaxBytes > 0 && st.Bytes+retentionSizeSlack >= uint64(st.MaxBytes)
		switch {
		case ageOK(st.FirstTime):
			v.Why = fmt.Sprintf("stream seq 1..%d aged out (the oldest left, stored %s, is about max_age %s old)", st.FirstSeq-1, Timestamp(st.FirstTime), st.MaxAge)
		case bySize:
			v.Why = fmt.Sprintf("stream seq 1..%d removed by size (%d of max_bytes %d)", st.FirstSeq-1, st.Bytes, st.MaxBytes)
		default:
			v.Problems = append(v.Problems, Problem{Kind: ProblemPurged, StreamSeq: st.FirstSeq,
				Detail: fmt.Sprintf("stream seq 1..%d gone, not by retention: the oldest left (stored %s) is younger than max_age %s allows for, and the stream holds %d of max_bytes %d: purged",
					st.FirstSeq-1, Timestamp(st.FirstTime), st.MaxAge, st.Bytes, st.MaxBytes)})
			return v
		}
		v.HeadTrimmed, v.RetainedFrom = true, st.FirstTime.Add(slack)
	}
	return v
}
