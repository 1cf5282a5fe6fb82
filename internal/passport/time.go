package passport

import (
	"errors"
	"time"
)

// Time window errors (SPEC §6 step 10).
var (
	ErrExpired          = errors.New("passport expired")
	ErrNotYetValid      = errors.New("passport not yet valid")
	ErrLifetimeExceeded = errors.New("passport lifetime exceeds the maximum")
)

// CheckTime checks the time window of SPEC §2 at now, with clock skew skew
// and maximum passport lifetime maxLifetime (both non-negative; the caller
// validates its configuration). It returns nil or exactly one of:
//
//   - ErrLifetimeExceeded when exp - iat > maxLifetime,
//   - ErrNotYetValid when iat > now + skew,
//   - ErrExpired when exp <= now - skew,
//
// checked in that order [ours: SPEC §2 sets none]. The lifetime comes first
// because it is a property of the token alone: a passport minted with too
// long a lifetime is refused for that reason whatever the clock says.
//
// The claims are whole seconds, so comparing them with the floor of a
// fractional bound is exact: iat <= x exactly when iat <= floor(x), and
// exp > x exactly when exp > floor(x).
func (c *Claims) CheckTime(now time.Time, skew, maxLifetime time.Duration) error {
	// exp - iat cannot overflow as an unsigned difference when exp >= iat,
	// which Parse guarantees; claims built otherwise are still handled.
	if c.ExpiresAt >= c.IssuedAt && uint64(c.ExpiresAt)-uint64(c.IssuedAt) > uint64(maxLifetime/time.Second) {
		return ErrLifetimeExceeded
	}
	if c.IssuedAt > now.Add(skew).Unix() {
		return ErrNotYetValid
	}
	if c.ExpiresAt <= now.Add(-skew).Unix() {
		return ErrExpired
	}
	return nil
}
