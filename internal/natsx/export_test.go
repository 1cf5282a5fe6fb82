package natsx

import "time"

// SetTimeoutWatchClock gives w a test clock; the last answer is "now".
func SetTimeoutWatchClock(w *TimeoutWatch, now func() time.Time) {
	w.now = now
	w.answered.Store(now().UnixNano())
}
