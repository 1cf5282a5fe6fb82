package loadgen

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// runFake runs s in a synctest bubble, where every slot takes service
// (fake time), and returns the recorded latency and lateness of each slot.
func runFake(t *testing.T, s schedule, service func(slot int) time.Duration) (lat, late []time.Duration, started int) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		lat = make([]time.Duration, s.n)
		late = make([]time.Duration, s.n)
		var mu sync.Mutex
		do := func(ctx context.Context, _, slot int) {
			select {
			case <-time.After(service(slot)):
			case <-ctx.Done():
			}
		}
		record := func(_, slot int, l, lt time.Duration) {
			mu.Lock()
			lat[slot], late[slot] = l, lt
			mu.Unlock()
		}
		_, started = s.run(t.Context(), do, record)
	})
	return lat, late, started
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// TestOpenLoopCountsFromDueTime is the coordinated-omission test: one worker,
// a request due every 1 ms, each taking 10 ms. Slot i starts at 10i ms
// though it was due at i ms; its latency must be 10(i+1) - i ms, not the
// 10 ms a closed-loop measurement would see.
func TestOpenLoopCountsFromDueTime(t *testing.T) {
	lat, late, started := runFake(t, schedule{n: 10, workers: 1, rate: 1000}, func(int) time.Duration { return ms(10) })
	if started != 10 {
		t.Fatalf("started %d slots, want 10", started)
	}
	for i := range 10 {
		if want := ms(10*(i+1) - i); lat[i] != want {
			t.Errorf("slot %d latency = %v, want %v", i, lat[i], want)
		}
		if want := ms(10*i - i); late[i] != want {
			t.Errorf("slot %d late = %v, want %v", i, late[i], want)
		}
	}
}

// TestOpenLoopStall: enough workers, one slow answer. The requests due
// while it stalls are sent on time by other workers, so only the slow one
// shows the stall.
func TestOpenLoopStall(t *testing.T) {
	lat, late, _ := runFake(t, schedule{n: 50, workers: 64, rate: 1000}, func(slot int) time.Duration {
		if slot == 10 {
			return ms(30)
		}
		return ms(2)
	})
	for i, l := range lat {
		want := ms(2)
		if i == 10 {
			want = ms(30)
		}
		if l != want || late[i] != 0 {
			t.Errorf("slot %d: latency %v late %v, want %v and 0", i, l, late[i], want)
		}
	}
}

// TestClosedLoop: latency counts from the send; nothing is late.
func TestClosedLoop(t *testing.T) {
	lat, late, started := runFake(t, schedule{n: 20, workers: 3}, func(int) time.Duration { return ms(10) })
	if started != 20 {
		t.Fatalf("started %d, want 20", started)
	}
	for i := range lat {
		if lat[i] != ms(10) || late[i] != 0 {
			t.Errorf("slot %d: latency %v late %v, want 10ms and 0", i, lat[i], late[i])
		}
	}
}

// TestScheduleTimeBound: the run stops by itself at stopAfter, in both
// modes, with the slots due by then started.
func TestScheduleTimeBound(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    schedule
		want int
	}{
		// Due at 0, 10, ..., 100 ms: 11 slots start by 100 ms.
		{"open", schedule{n: 1000, workers: 8, rate: 100, stopAfter: ms(100)}, 11},
		// Two workers, 10 ms each: slots start at 0, 10, ..., 100 ms.
		{"closed", schedule{n: 1000, workers: 2, stopAfter: ms(100)}, 22},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, started := runFake(t, tc.s, func(int) time.Duration { return ms(10) })
			if started != tc.want {
				t.Errorf("started %d slots, want %d", started, tc.want)
			}
		})
	}
}

// TestScheduleCancel: a cancelled context ends the run; slots in flight
// see the cancellation.
func TestScheduleCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(ms(25), cancel)
		var mu sync.Mutex
		var slots []int
		s := schedule{n: 1000, workers: 1, rate: 100}
		_, started := s.run(ctx, func(ctx context.Context, _, slot int) {
			<-ctx.Done()
		}, func(_, slot int, _, _ time.Duration) {
			mu.Lock()
			slots = append(slots, slot)
			mu.Unlock()
		})
		if started != 1 || !slices.Equal(slots, []int{0}) {
			t.Errorf("started %d, recorded %v; want one slot, 0", started, slots)
		}
	})
}
