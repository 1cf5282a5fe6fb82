package audit

import (
	"slices"
	"testing"
)

func positions(ps []*pending) []uint64 {
	var out []uint64
	for _, p := range ps {
		out = append(out, p.pos)
	}
	return out
}

// TestWindowGoBack: after a failure, the acknowledged prefix is kept and
// everything from the first unacknowledged event is sent again, in spool
// order and before what was already queued, even events acknowledged after
// that first failure (the stream must see node_seq order).
func TestWindowGoBack(t *testing.T) {
	ok := map[uint64]bool{1: true, 2: true, 4: true}
	w := window{resend: []*pending{{pos: 6}}}
	for pos := uint64(1); pos <= 5; pos++ {
		w.inflight = append(w.inflight, &pending{pos: pos})
	}
	var settled []uint64
	acked := w.goBack(func(pm *pending) bool {
		settled = append(settled, pm.pos)
		return ok[pm.pos]
	})
	if got, want := settled, []uint64{1, 2, 3, 4, 5}; !slices.Equal(got, want) {
		t.Errorf("settled %v, want every event in flight %v", got, want)
	}
	if got, want := positions(acked), []uint64{1, 2}; !slices.Equal(got, want) {
		t.Errorf("goBack acknowledged %v, want the prefix %v", got, want)
	}
	if w.acked != 2 {
		t.Errorf("acked = %d, want 2", w.acked)
	}
	if got, want := positions(w.resend), []uint64{3, 4, 5, 6}; !slices.Equal(got, want) {
		t.Errorf("resend = %v, want %v", got, want)
	}
	if len(w.inflight) != 0 {
		t.Errorf("after goBack: %d in flight, want 0", len(w.inflight))
	}

	w.inflight, w.resend = []*pending{{pos: 7}}, nil
	w.ackHead()
	if w.acked != 7 || len(w.inflight) != 0 {
		t.Errorf("ackHead: acked %d, %d in flight; want 7, 0", w.acked, len(w.inflight))
	}
}
