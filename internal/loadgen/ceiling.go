package loadgen

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// CeilingConfig is a crypto-ceiling run.
type CeilingConfig struct {
	// Plan supplies the pre-signed requests; only Fresh ones are used.
	Plan *Plan
	// Workers verify in parallel. If zero, 1; use runtime.GOMAXPROCS(0)
	// for "all cores".
	Workers int
	// Decisions bounds the run by count, Duration by time; at least one
	// must be set.
	Decisions int
	Duration  time.Duration
}

// Ceiling measures the physical limit of the work every decision must do:
// two ed25519.Verify calls, the passport signature over its JWS signing
// input and the request proof over the transcript digest, on pre-signed
// requests, with nothing else around them. Latency is the time of one
// decision; CPU is this process's.
func Ceiling(ctx context.Context, cfg CeilingConfig) (*Report, error) {
	if cfg.Plan == nil || (cfg.Decisions <= 0 && cfg.Duration <= 0) {
		return nil, errors.New("loadgen: ceiling: no plan, or neither a count nor a duration")
	}
	var reqs []*request
	for i := range cfg.Plan.reqs {
		if r := &cfg.Plan.reqs[i]; r.kind == Fresh {
			reqs = append(reqs, r)
		}
	}
	if len(reqs) == 0 {
		return nil, errors.New("loadgen: ceiling: the plan has no fresh requests")
	}
	workers := max(1, cfg.Workers)
	n := cfg.Decisions
	if n <= 0 {
		n = int(^uint(0) >> 1)
	}
	pub := cfg.Plan.pub
	hists := make([]*hdrhistogram.Histogram, workers)
	var next, failed atomic.Int64
	var deadline time.Time
	cpuBefore, _ := processCPU(os.Getpid())
	start := time.Now()
	if cfg.Duration > 0 {
		deadline = start.Add(cfg.Duration)
	}
	var wg sync.WaitGroup
	for w := range workers {
		h := newHist()
		hists[w] = h
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				t := time.Now()
				if !deadline.IsZero() && t.After(deadline) {
					return
				}
				r := reqs[i%int64(len(reqs))]
				if !ed25519.Verify(pub, r.jwsInput, r.jwsSig) || !ed25519.Verify(pub, r.digest[:], r.proof) {
					failed.Add(1)
				}
				recordLatency(h, time.Since(t))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpuAfter, _ := processCPU(os.Getpid())
	rep := &Report{Mode: "ceiling", Workers: workers, ElapsedSeconds: elapsed.Seconds(),
		Distinct: len(reqs), Outcomes: map[string]int64{}, hist: newHist()}
	for _, h := range hists {
		rep.hist.Merge(h)
	}
	rep.Answered = rep.hist.TotalCount()
	rep.Started = int(rep.Answered)
	rep.Planned = rep.Started
	rep.Outcomes["verified"] = rep.Answered - failed.Load()
	if f := failed.Load(); f > 0 {
		rep.Outcomes["failed"] = f
		rep.Errors.Unexpected = f
	}
	rep.finish(nil, nil, nil, cpuAfter-cpuBefore)
	return rep, ctx.Err()
}
