package proxy

import (
	"testing"
	"time"
)

func TestLogLimit(t *testing.T) {
	l := &logLimit{interval: 10 * time.Second}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, step := range []struct {
		at      time.Duration
		ok      bool
		dropped int
	}{
		{0, true, 0},
		{time.Second, false, 0},
		{9 * time.Second, false, 0},
		{10 * time.Second, true, 2},
		{11 * time.Second, false, 0},
		{30 * time.Second, true, 1},
	} {
		ok, dropped := l.allow(t0.Add(step.at))
		if ok != step.ok || dropped != step.dropped {
			t.Errorf("allow(+%s) = %v, %d; want %v, %d", step.at, ok, dropped, step.ok, step.dropped)
		}
	}
}
