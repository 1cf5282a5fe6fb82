package retry

import (
	"context"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: 800 * time.Millisecond}
	// Steps 100, 200, 400, 800, 800: each wait lies in [step/2, step].
	steps := []time.Duration{100, 200, 400, 800, 800, 800}
	for round := range 2 {
		for i, s := range steps {
			s *= time.Millisecond
			for range 50 {
				c := b // the same step, drawn many times
				if d := c.Next(); d < s/2 || d > s {
					t.Fatalf("round %d, attempt %d: wait %v outside [%v, %v]", round, i, d, s/2, s)
				}
			}
			b.Next()
		}
		b.Reset()
	}
}

// TestBackoffMaxBelowMin: a Max below Min never waits longer than Min.
func TestBackoffMaxBelowMin(t *testing.T) {
	b := Backoff{Min: time.Second, Max: time.Millisecond}
	for i := range 5 {
		if d := b.Next(); d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("attempt %d: wait %v outside [500ms, 1s]", i, d)
		}
	}
}

func TestSleep(t *testing.T) {
	if !Sleep(t.Context(), time.Millisecond) {
		t.Error("Sleep(1ms) with a live context = false, want true")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep(1h) with a cancelled context = true, want false")
	}
}
