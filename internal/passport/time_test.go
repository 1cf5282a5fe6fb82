package passport

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestCheckTime(t *testing.T) {
	const (
		iat = 1740000000
		exp = iat + 300
	)
	skew, life := 30*time.Second, 900*time.Second
	at := func(sec int64, frac time.Duration) time.Time { return time.Unix(sec, 0).Add(frac) }
	tests := []struct {
		name     string
		iat, exp int64
		now      time.Time
		skew     time.Duration
		life     time.Duration
		want     error
	}{
		{"inside", iat, exp, at(iat+100, 0), skew, life, nil},
		{"at iat", iat, exp, at(iat, 0), skew, life, nil},
		{"iat at now+skew", iat, exp, at(iat-30, 0), skew, life, nil},
		{"iat just past now+skew", iat, exp, at(iat-31, 0), skew, life, ErrNotYetValid},
		{"iat past now+skew by a fraction", iat, exp, at(iat-31, 999*time.Millisecond), skew, life, ErrNotYetValid},
		{"iat at now+skew with fraction", iat, exp, at(iat-30, 500*time.Millisecond), skew, life, nil},
		{"no skew, before iat", iat, exp, at(iat-1, 0), 0, life, ErrNotYetValid},
		{"exp just after now-skew", iat, exp, at(exp+29, 0), skew, life, nil},
		{"exp at now-skew", iat, exp, at(exp+30, 0), skew, life, ErrExpired},
		{"exp a fraction after now-skew", iat, exp, at(exp+29, 999*time.Millisecond), skew, life, nil},
		{"no skew, at exp", iat, exp, at(exp, 0), 0, life, ErrExpired},
		{"no skew, just before exp", iat, exp, at(exp-1, 999*time.Millisecond), 0, life, nil},
		{"lifetime at maximum", iat, iat + 900, at(iat, 0), skew, life, nil},
		{"lifetime one second over", iat, iat + 901, at(iat, 0), skew, life, ErrLifetimeExceeded},
		{"sub-second maximum floors", iat, iat + 900, at(iat, 0), skew, life + 999*time.Millisecond, nil},
		{"lifetime before clock", iat, iat + 901, at(iat-3600, 0), skew, life, ErrLifetimeExceeded},
		{"lifetime before expiry", iat, iat + 901, at(iat+7200, 0), skew, life, ErrLifetimeExceeded},
		{"huge exp", iat, math.MaxInt64, at(iat, 0), skew, life, ErrLifetimeExceeded},
		{"not yet valid before expired", iat, exp, at(iat-3600, 0), skew, life, ErrNotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Claims{IssuedAt: tt.iat, ExpiresAt: tt.exp}
			if err := c.CheckTime(tt.now, tt.skew, tt.life); !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Errorf("CheckTime(%v) = %v, want %v", tt.now.Unix(), err, tt.want)
			}
		})
	}
}
