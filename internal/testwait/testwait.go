// Package testwait is the one way tests wait for an effect: poll a
// condition with a generous deadline (STYLE §9), never sleep for it and
// never assert how long it took. Until returns the time taken so a test can
// record it with t.Logf.
//
// It is test support: only _test.go files import it.
package testwait

import (
	"testing"
	"time"
)

// interval is how often Until asks: often enough that a wait costs little
// beyond the effect itself, rarely enough not to load a shared machine.
const interval = 20 * time.Millisecond

// Until calls cond until it returns nil and returns how long that took. If
// cond still fails once timeout has passed, the test fails with what and
// cond's last error. cond runs on the test's goroutine; one that can block
// bounds itself (a context with its own timeout).
func Until(t testing.TB, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(interval)
	}
}
