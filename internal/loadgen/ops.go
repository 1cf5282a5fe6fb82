package loadgen

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// OpsConfig is a run of operations that are not HTTP requests, such as
// the NATS floor's raw JetStream pairs (internal/natsfloor): the same
// schedule, latency, CPU and NATS counters as Run, around an operation the
// caller supplies.
type OpsConfig struct {
	// Kind names what the operations are, the report's Expect
	// ("nats-floor"). Required.
	Kind string
	// Targets name what the operations go to, for the report.
	Targets []string
	// Op performs one operation for worker (0 to Workers-1; one worker's
	// calls never overlap). An error counts as a transport error, its text
	// among the report's samples. Required.
	Op func(ctx context.Context, worker int) error
	// Outcome is the name under which successful operations are counted.
	// If empty, "ok".
	Outcome string
	// Ops bounds the run by count. Required.
	Ops int
	// Rate, Workers and Duration as in Config.
	Rate     float64
	Workers  int
	Duration time.Duration
	// Settle, if not nil, runs after the last operation and before the
	// closing samples: it waits for asynchronous work the operations
	// started (acknowledgements) and returns how many of those failed,
	// added to the unexpected errors, and why the last did (or why it
	// could not wait), kept among the samples.
	Settle func(ctx context.Context) (failed int64, err error)
	// CPU and NATSMonitor as in Config.
	CPU         []CPUGroup
	NATSMonitor []string
}

// RunOps runs cfg.Op on the schedule and reports like Run: throughput,
// latency from each due time (open loop) or send (closed loop), CPU of
// cfg.CPU per 1,000 operations, the servers' counters.
func RunOps(ctx context.Context, cfg OpsConfig) (*Report, error) {
	if cfg.Op == nil || cfg.Ops < 1 || cfg.Kind == "" {
		return nil, errors.New("loadgen: ops: no operation, count or kind")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	if cfg.Outcome == "" {
		cfg.Outcome = "ok"
	}
	workers := make([]*worker, cfg.Workers)
	for i := range workers {
		workers[i] = &worker{hist: newHist(), outcomes: map[string]int64{}}
	}
	m, err := startMeter(ctx, cfg.CPU, cfg.NATSMonitor)
	if err != nil {
		return nil, err
	}
	do := func(ctx context.Context, wi, slot int) {
		w := workers[wi]
		if err := cfg.Op(ctx, wi); err != nil {
			w.errs.add(&w.errs.Transport, fmt.Sprintf("%s %d: %v", cfg.Kind, slot, err))
			return
		}
		w.outcomes[cfg.Outcome]++
	}
	record := func(wi, _ int, latency, late time.Duration) {
		w := workers[wi]
		recordLatency(w.hist, latency)
		if late > time.Millisecond {
			w.late++
		}
	}
	s := schedule{n: cfg.Ops, workers: cfg.Workers, rate: cfg.Rate, stopAfter: cfg.Duration}
	start, started := s.run(ctx, do, record)
	elapsed := time.Since(start)
	var settleFailed int64
	var settleErr error
	if cfg.Settle != nil {
		settleFailed, settleErr = cfg.Settle(ctx)
	}
	reading, err := m.stop(ctx)
	if err != nil {
		return nil, err
	}

	mode := "closed"
	if cfg.Rate > 0 {
		mode = "open"
	}
	rep := &Report{
		Mode: mode, Expect: cfg.Kind, Targets: cfg.Targets, Workers: cfg.Workers, RatePerSec: cfg.Rate,
		Planned: cfg.Ops, Started: started, ElapsedSeconds: elapsed.Seconds(),
		Outcomes: map[string]int64{}, hist: newHist(),
	}
	for _, w := range workers {
		rep.merge(w)
	}
	rep.Errors.Unexpected += settleFailed
	if settleErr != nil {
		rep.Errors.Samples = append(rep.Errors.Samples, settleErr.Error())
	}
	m.finish(rep, reading)
	return rep, ctx.Err()
}
