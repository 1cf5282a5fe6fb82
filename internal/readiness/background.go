package readiness

import (
	"context"
	"sync"
	"time"
)

// Background wraps a check that asks a remote server (a NATS stream
// look-up) so that readyz never waits for it: each call starts at most
// one refresh in the background, bounded by timeout, and returns the
// latest result at once. Only the first call waits, bounded by its ctx,
// for a first result. A check that blocked while its server had no quorum
// made readyz itself time out, so a load balancer or a watcher saw no
// answer at all instead of a 503 naming the cause.
func Background(c Check, timeout time.Duration) Check {
	b := &background{check: c, timeout: timeout, first: make(chan struct{})}
	return b.run
}

type background struct {
	check   Check
	timeout time.Duration
	first   chan struct{} // closed when the first result is in

	mu      sync.Mutex
	running bool  // guarded by mu
	have    bool  // guarded by mu
	err     error // guarded by mu; the latest result
}

func (b *background) run(ctx context.Context) error {
	b.mu.Lock()
	if !b.running {
		b.running = true
		go b.refresh()
	}
	have, err := b.have, b.err
	b.mu.Unlock()
	if have {
		return err
	}
	select {
	case <-b.first:
	case <-ctx.Done():
		return ctx.Err()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func (b *background) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	err := b.check(ctx)
	cancel()
	b.mu.Lock()
	first := !b.have
	b.err, b.have, b.running = err, true, false
	b.mu.Unlock()
	if first {
		close(b.first)
	}
}
