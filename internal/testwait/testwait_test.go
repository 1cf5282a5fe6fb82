package testwait

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestUntilReturnsOnceTrue(t *testing.T) {
	calls := 0
	took := Until(t, 10*time.Second, "third call", func() error {
		calls++
		if calls < 3 {
			return fmt.Errorf("call %d", calls)
		}
		return nil
	})
	if calls != 3 {
		t.Errorf("Until called cond %d times, want 3 (it stops at the first nil)", calls)
	}
	if took < 2*interval {
		t.Errorf("Until took %s for three calls, want at least two intervals (%s)", took, 2*interval)
	}
}

// fatalTB records Fatalf and ends the goroutine as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestUntilFailsWithLastError(t *testing.T) {
	ft := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Until(ft, 50*time.Millisecond, "never", func() error { return errors.New("still no") })
		t.Error("Until returned although cond never held")
	}()
	<-done
	if want := "never: not within 50ms: still no"; !strings.Contains(ft.msg, want) {
		t.Errorf("Until failed with %q, want %q", ft.msg, want)
	}
}
