package proxy

import (
	"sync"
	"time"
)

// logLimit lets one log line through per interval and counts the rest, so
// a provider outage under load is one warning every few seconds, not one
// per request (STYLE §7); every request is still in the audit stream.
type logLimit struct {
	interval time.Duration

	mu      sync.Mutex
	last    time.Time // guarded by mu
	dropped int       // guarded by mu
}

// allow reports whether a line may be logged at now and, if so, how many
// were dropped since the last one.
func (l *logLimit) allow(now time.Time) (ok bool, dropped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.interval {
		l.dropped++
		return false, 0
	}
	l.last, dropped, l.dropped = now, l.dropped, 0
	return true, dropped
}
