package testlog

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// TestBufferConcurrent: lines written from many goroutines through a slog
// handler while the test reads all arrive whole; run with -race, it also
// shows Write and String share no unguarded state.
func TestBufferConcurrent(t *testing.T) {
	var buf Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	const writers, lines = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				log.Info("line", "writer", w, "i", i)
			}
		})
	}
	for range 10 {
		_ = buf.String() // reads while the writers write
	}
	wg.Wait()
	got := buf.String()
	if n := strings.Count(got, "msg=line "); n != writers*lines {
		t.Fatalf("buffer holds %d lines, want %d", n, writers*lines)
	}
	for w := range writers {
		if want := fmt.Sprintf("writer=%d i=%d\n", w, lines-1); !strings.Contains(got, want) {
			t.Errorf("buffer lacks %q", want)
		}
	}
}
