package bundle

import (
	"testing"
	"time"
)

func TestParseFreshness(t *testing.T) {
	for name, want := range map[string]Freshness{
		"realtime": Realtime, "bounded": Bounded, "offline-ok": OfflineOK, "offline_ok": OfflineOK,
		"Realtime": FreshnessUnknown, "": FreshnessUnknown, "offline": FreshnessUnknown,
	} {
		if got := ParseFreshness(name); got != want {
			t.Errorf("ParseFreshness(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestCheckFresh(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name     string
		class    Freshness
		max, age time.Duration
		window   time.Duration
		want     FreshResult
	}{
		{"realtime fresh", Realtime, 0, 5 * s, 5 * s, FreshOK},
		{"realtime stale", Realtime, 0, 5*s + 1, 5 * s, FreshStale},
		{"realtime default window", Realtime, 0, 5 * s, 0, FreshOK},
		{"realtime default window stale", Realtime, 0, 6 * s, 0, FreshStale},
		{"realtime custom window", Realtime, 0, 9 * s, 10 * s, FreshOK},
		{"realtime ignores max", Realtime, time.Hour, 6 * s, 5 * s, FreshStale},
		{"realtime future view", Realtime, 0, -time.Hour, 5 * s, FreshOK},
		{"bounded fresh", Bounded, 300 * s, 300 * s, 5 * s, FreshOK},
		{"bounded stale", Bounded, 300 * s, 301 * s, 5 * s, FreshStale},
		{"bounded without max", Bounded, 0, 0, 5 * s, FreshStale},
		{"bounded negative max", Bounded, -s, 0, 5 * s, FreshStale},
		{"offline-ok", OfflineOK, 0, 1000 * time.Hour, 5 * s, FreshOK},
		{"unknown", FreshnessUnknown, 300 * s, 0, 5 * s, FreshUnknownClass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Route{Freshness: tt.class, MaxStaleness: tt.max}
			if got := r.CheckFresh(tt.age, tt.window); got != tt.want {
				t.Errorf("CheckFresh(age %v, window %v) = %d, want %d", tt.age, tt.window, got, tt.want)
			}
		})
	}
}
