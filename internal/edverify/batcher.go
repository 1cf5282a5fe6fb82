package edverify

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// Config configures a Batcher.
type Config struct {
	// Window is how long a batch stays open for more signatures after its
	// first one arrived: the most a signature waits before its batch is
	// verified. If zero, a batch takes only the signatures already queued
	// when a worker becomes free, so nothing waits on purpose and batches
	// form only when signatures arrive faster than workers verify them.
	Window time.Duration

	// MaxBatch is the most signatures verified as one batch. If zero, 64.
	// It must not exceed 94: beyond that curve25519-voi stops using the
	// expanded keys in a batch.
	MaxBatch int

	// Workers is the number of goroutines that collect and verify batches.
	// If zero, runtime.GOMAXPROCS(0).
	Workers int

	// QueueLen bounds the signatures waiting for a worker. A signature that
	// finds the queue full is verified singly by its caller. If zero,
	// 4 × MaxBatch × Workers.
	QueueLen int
}

// maxBatch is where curve25519-voi's batch verifier drops the expanded keys
// (batchPippengerThreshold in primitives/ed25519/batch_verify.go).
const maxBatch = 94

// A Batcher verifies Ed25519 signatures submitted concurrently by many
// goroutines as batches. When every signature in a batch is valid, that
// costs about half the CPU per signature of crypto/ed25519, and about 0.65
// of PublicKey.Verify with expanded keys (docs/PERFORMANCE.md).
//
// Its answers are those of crypto/ed25519 for every input except one class
// that only the holder of the private key can make; see the package
// documentation ("Batch semantics").
//
// Run owns the worker goroutines; Verify may be called from any goroutine.
type Batcher struct {
	cfg   Config
	queue chan *pending

	// stopped is closed when Run has returned; callers still waiting then
	// verify their own signature.
	stopped  chan struct{}
	stopOnce sync.Once
}

// pending is one signature waiting for a worker.
type pending struct {
	key  *PublicKey
	msg  []byte
	sig  []byte
	done chan bool // buffered 1; receives the answer once
}

// NewBatcher returns a Batcher for cfg. It reports every invalid field.
func NewBatcher(cfg Config) (*Batcher, error) {
	var errs []error
	if cfg.Window < 0 {
		errs = append(errs, fmt.Errorf("window %v: must not be negative", cfg.Window))
	}
	if cfg.MaxBatch < 0 || cfg.MaxBatch > maxBatch {
		errs = append(errs, fmt.Errorf("max batch %d: must be between 0 and %d", cfg.MaxBatch, maxBatch))
	}
	if cfg.Workers < 0 {
		errs = append(errs, fmt.Errorf("workers %d: must not be negative", cfg.Workers))
	}
	if cfg.QueueLen < 0 {
		errs = append(errs, fmt.Errorf("queue length %d: must not be negative", cfg.QueueLen))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("edverify: %w", err)
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 64
	}
	if cfg.Workers == 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.QueueLen == 0 {
		cfg.QueueLen = 4 * cfg.MaxBatch * cfg.Workers
	}
	return &Batcher{
		cfg:     cfg,
		queue:   make(chan *pending, cfg.QueueLen),
		stopped: make(chan struct{}),
	}, nil
}

// Run verifies queued signatures until ctx is done, then answers what is
// still queued and returns nil once every worker it started has exited. Run
// must be called once; signatures submitted before it starts wait for it,
// and those submitted after it returned are verified by their caller.
func (b *Batcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range b.cfg.Workers {
		wg.Go(func() { b.work(ctx) })
	}
	wg.Wait()
	b.stopOnce.Do(func() { close(b.stopped) })
	// Whatever was queued after the workers stopped is answered here; a
	// caller racing with this drain also watches stopped and answers itself.
	for {
		select {
		case p := <-b.queue:
			p.done <- p.key.Verify(p.msg, p.sig)
		default:
			return nil
		}
	}
}

// Verify reports whether sig is a valid Ed25519 signature of msg by key.
// It returns false if ctx ends first (a decision never allows on doubt).
// Inputs the cofactored batch equation could judge differently from
// crypto/ed25519, a full queue and a stopped Batcher all lead to a single
// verification in the calling goroutine instead. msg and sig must not be
// modified until Verify returns.
func (b *Batcher) Verify(ctx context.Context, key *PublicKey, msg, sig []byte) bool {
	if key == nil || len(sig) != SignatureSize || ctx.Err() != nil {
		return false
	}
	if !batchSafe(key, sig) {
		return key.Verify(msg, sig)
	}
	p := &pending{key: key, msg: msg, sig: sig, done: make(chan bool, 1)}
	select {
	case b.queue <- p:
	case <-b.stopped:
		return key.Verify(msg, sig)
	default: // overloaded: queueing would only add latency
		return key.Verify(msg, sig)
	}
	select {
	case ok := <-p.done:
		return ok
	case <-ctx.Done():
		return false
	case <-b.stopped:
		// The drain in Run may already have answered; both answers come
		// from Verify or a batch that passed, so either is sound.
		select {
		case ok := <-p.done:
			return ok
		default:
			return key.Verify(msg, sig)
		}
	}
}

// work is one worker: it collects a batch, verifies it, and repeats until
// ctx is done.
func (b *Batcher) work(ctx context.Context) {
	var (
		batch = make([]*pending, 0, b.cfg.MaxBatch)
		bv    = voi.NewBatchVerifierWithCapacity(b.cfg.MaxBatch)
		opts  = batchOptions()
		timer = time.NewTimer(time.Hour)
		// skip counts batches still to verify singly after failures, so a
		// stream of bad signatures cannot make every batch pay twice.
		skip, backoff int
	)
	timer.Stop()
	defer timer.Stop()
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case p := <-b.queue:
			batch = append(batch, p)
		}
		batch = b.collect(ctx, batch, timer)
		if len(batch) == 1 || skip > 0 {
			skip = max(skip-1, 0)
			for _, p := range batch {
				p.done <- p.key.Verify(p.msg, p.sig)
			}
			continue
		}
		if verifyBatch(bv, opts, batch) {
			backoff = 0
			for _, p := range batch {
				p.done <- true
			}
			continue
		}
		// At least one signature is bad, or the batch's random
		// coefficients hit a 2^-128 chance: check each one alone, with
		// crypto/ed25519's rules, so one bad signature denies no other.
		for _, p := range batch {
			p.done <- p.key.Verify(p.msg, p.sig)
		}
		backoff = min(2*backoff+1, 16)
		skip = backoff
	}
}

// collect adds queued signatures to batch until it is full, the window
// since its first signature has passed, or (with no window) the queue is
// empty.
func (b *Batcher) collect(ctx context.Context, batch []*pending, timer *time.Timer) []*pending {
	if b.cfg.Window == 0 {
		for len(batch) < b.cfg.MaxBatch {
			select {
			case p := <-b.queue:
				batch = append(batch, p)
			default:
				return batch
			}
		}
		return batch
	}
	timer.Reset(b.cfg.Window)
	defer timer.Stop()
	for len(batch) < b.cfg.MaxBatch {
		select {
		case p := <-b.queue:
			batch = append(batch, p)
		case <-timer.C:
			return batch
		case <-ctx.Done():
			return batch
		}
	}
	return batch
}

// batchOptions are strict ones: the entries were already screened by
// batchSafe, and refusing small-order and non-canonical points here too
// keeps a screening mistake from widening what a batch accepts.
func batchOptions() *voi.Options {
	return &voi.Options{Verify: &voi.VerifyOptions{}}
}

// verifyBatch reports whether every signature in batch is valid under the
// cofactored equation, with fresh random coefficients from crypto/rand.
func verifyBatch(bv *voi.BatchVerifier, opts *voi.Options, batch []*pending) bool {
	bv.Reset()
	for _, p := range batch {
		bv.AddExpandedWithOptions(p.key.expanded, p.msg, p.sig, opts)
	}
	return bv.VerifyBatchOnly(nil)
}
