package loadgen

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRunOps: every operation is counted once, failures as transport
// errors with their text, Settle's failures as unexpected answers, and
// the CPU of the given processes per 1,000 operations.
func TestRunOps(t *testing.T) {
	var calls atomic.Int64
	settled := false
	rep, err := RunOps(t.Context(), OpsConfig{
		Kind: "test-op", Targets: []string{"A", "B"}, Outcome: "done", Ops: 200, Workers: 4,
		Op: func(_ context.Context, worker int) error {
			if worker < 0 || worker >= 4 {
				t.Errorf("worker %d, want 0 to 3", worker)
			}
			if calls.Add(1)%10 == 0 {
				return errors.New("refused")
			}
			return nil
		},
		Settle: func(context.Context) (int64, error) {
			settled = true
			return 2, errors.New("2 acknowledgements failed")
		},
		CPU: []CPUGroup{{Role: "self", PIDs: []int{os.Getpid()}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 200 || rep.Started != 200 || rep.Answered != 180 || rep.Outcomes["done"] != 180 {
		t.Errorf("calls %d, started %d, answered %d, outcomes %v; want 200, 200, 180, done 180", calls.Load(), rep.Started, rep.Answered, rep.Outcomes)
	}
	if rep.Errors.Transport != 20 || rep.Errors.Unexpected != 2 || !settled {
		t.Errorf("errors %+v, settled %v; want 20 transport, 2 unexpected, Settle called", rep.Errors, settled)
	}
	samples := strings.Join(rep.Errors.Samples, "\n")
	for _, want := range []string{"refused", "2 acknowledgements failed", "test-op "} {
		if !strings.Contains(samples, want) {
			t.Errorf("samples lack %q:\n%s", want, samples)
		}
	}
	if rep.Expect != "test-op" || rep.Mode != "closed" || len(rep.Targets) != 2 || len(rep.CPU) != 2 || rep.CPU[0].Role != "self" {
		t.Errorf("report = expect %q mode %q targets %v cpu %+v", rep.Expect, rep.Mode, rep.Targets, rep.CPU)
	}

	t.Run("open loop by time", func(t *testing.T) {
		start := time.Now()
		rep, err := RunOps(t.Context(), OpsConfig{Kind: "tick", Ops: 1000, Rate: 100, Workers: 2, Duration: 200 * time.Millisecond,
			Op: func(context.Context, int) error { return nil }})
		if err != nil {
			t.Fatal(err)
		}
		// Due times stop at 200 ms: about 20 of the 1,000, never all.
		if rep.Mode != "open" || rep.Answered < 1 || rep.Answered >= 1000 || rep.Outcomes["ok"] != rep.Answered {
			t.Errorf("open loop: mode %q, answered %d, outcomes %v; want open, bounded by the duration, all ok", rep.Mode, rep.Answered, rep.Outcomes)
		}
		t.Logf("open loop at 100/s for 200 ms: %d operations in %v", rep.Answered, time.Since(start))
	})
	if _, err := RunOps(t.Context(), OpsConfig{Kind: "x", Ops: 1}); err == nil {
		t.Error("RunOps without an operation: want an error")
	}
}
