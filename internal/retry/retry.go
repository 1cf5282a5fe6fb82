// Package retry spaces the attempts of a loop that waits for something to
// come back (NATS, a JetStream leader, a stream, a watch): a jittered
// exponential back-off, and a sleep that ends with its context.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is a jittered exponential back-off from Min to Max. The zero
// step starts at Min; a Backoff is not safe for concurrent use (each retry
// loop owns one).
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Next returns the wait before the next attempt: the current step, which
// doubles with each call up to Max, with up to half of it taken off at
// random, so that nodes that lost NATS together do not return together.
// The wait is never below half of Min.
func (b *Backoff) Next() time.Duration {
	if b.cur < b.Min {
		b.cur = b.Min
	}
	d := b.cur
	b.cur = min(2*b.cur, b.Max)
	return d - rand.N(d/2+1)
}

// Reset starts the next wait at Min again, after a success.
func (b *Backoff) Reset() { b.cur = b.Min }

// Sleep waits d or until ctx is done, and reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
