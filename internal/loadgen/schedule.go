package loadgen

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// schedule hands out slots 0..n-1 to a fixed set of workers.
//
// Open loop (rate > 0): slot i is due at start + i/rate whatever happened
// before it, and its latency counts from that due time, not from when a
// worker got round to it. A stalled server therefore shows in the latency of
// every request that should have gone out meanwhile, instead of silently
// lowering the offered rate (coordinated omission). Closed loop (rate 0):
// each worker sends its next slot when its last one was answered, and
// latency counts from the send.
type schedule struct {
	n       int
	workers int
	rate    float64 // arrivals per second; 0 for closed loop
	// stopAfter, if positive, ends the run: no slot is started (closed
	// loop) or due (open loop) after start + stopAfter. Slots already
	// started run to completion.
	stopAfter time.Duration
}

// slotFunc performs slot on behalf of worker. It must return when ctx is
// done.
type slotFunc func(ctx context.Context, worker, slot int)

// recordFunc receives the latency of a finished slot and how late it
// started after its due time (always 0 in closed loop). Calls for one
// worker never overlap.
type recordFunc func(worker, slot int, latency, late time.Duration)

// run runs the schedule and returns when every worker has finished: all
// slots done, the time bound reached, or ctx done. It returns the start
// time and the number of slots started.
func (s schedule) run(ctx context.Context, do slotFunc, record recordFunc) (start time.Time, started int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	start = time.Now()
	var end time.Time
	if s.stopAfter > 0 {
		end = start.Add(s.stopAfter)
	}
	var interval float64 // nanoseconds between due times
	if s.rate > 0 {
		interval = 1e9 / s.rate
	}
	var count atomic.Int64
	for w := range s.workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= s.n {
					return
				}
				var due time.Time
				if interval > 0 {
					due = start.Add(time.Duration(float64(i) * interval))
					if !end.IsZero() && due.After(end) {
						return
					}
					if !sleepUntil(ctx, due) {
						return
					}
				} else {
					due = time.Now()
					if !end.IsZero() && due.After(end) {
						return
					}
				}
				count.Add(1)
				began := time.Now()
				do(ctx, w, i)
				record(w, i, time.Since(due), began.Sub(due))
			}
		})
	}
	wg.Wait()
	return start, int(count.Load())
}

// sleepUntil waits until t and reports whether ctx was still live then.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
