package readiness

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestBackgroundNeverBlocks: once a first result is in, a call returns the
// latest result at once even while the check itself hangs, and a finished
// refresh's result is what the next calls see.
func TestBackgroundNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	results := make(chan error, 4)
	c := Background(func(ctx context.Context) error {
		select {
		case err := <-results:
			return err
		case <-release:
			return errors.New("released")
		case <-ctx.Done():
			return ctx.Err()
		}
	}, time.Minute)

	results <- nil
	if err := c(t.Context()); err != nil {
		t.Fatalf("first call = %v, want the first result nil", err)
	}
	// The second call starts a refresh that hangs; it must not wait.
	done := make(chan error, 1)
	go func() { done <- c(t.Context()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("second call = %v, want the latest result nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a call waited for a hanging refresh")
	}
	// The hanging refresh ends with an error; later calls report it.
	results <- errors.New("stream gone")
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c(t.Context())
		if err != nil && err.Error() == "stream gone" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls = %v, want the refreshed error", err)
		}
		select {
		case results <- errors.New("stream gone"):
		default:
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
}

// TestBackgroundFirstCallBounded: the first call waits for a first result
// only as long as its ctx allows.
func TestBackgroundFirstCallBounded(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	c := Background(func(ctx context.Context) error {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil
	}, time.Minute)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if err := c(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first call = %v, want %v", err, context.DeadlineExceeded)
	}
}
