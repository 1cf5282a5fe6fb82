package bundlekv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/retry"
)

// Back-off of bucket opening and watch re-creation (STYLE §6: bounded, with
// jitter, so a fleet restarted with its NATS cluster does not retry in step).
const (
	retryMin = 250 * time.Millisecond
	retryMax = 5 * time.Second
)

// Run watches the bucket until ctx is done: initial values, then updates,
// verifying each (SPEC §8.2). Watches die silently on some reconnects, so Run
// re-creates its watch with back-off whenever it ends, and reads each key
// directly every ReconcileInterval; a revision the watch did not deliver
// is applied and the watch re-created. Run also answers status requests on
// StatusSubject. It returns nil when ctx is done, after every goroutine it
// started has exited.
func (w *Watcher) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { w.serveStatus(ctx) })
	if w.cached {
		w.cached = false
		w.applied(w.snap.Load(), KindTrustMaterial, KindPolicyBundle)
	}
	w.loop(ctx)
	return nil
}

// errWatchLagging ends a watch that missed a revision a direct read found.
var errWatchLagging = errors.New("watch missed an update")

func (w *Watcher) loop(ctx context.Context) {
	bo := retry.Backoff{Min: retryMin, Max: retryMax}
	var (
		kv      jetstream.KeyValue
		failing bool // logged once per outage, then at debug level
	)
	current := func() { bo.Reset(); failing = false }
	for ctx.Err() == nil {
		var err error
		if kv == nil {
			octx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
			kv, err = openBucket(octx, w.cfg.JetStream, w.cfg.Bucket, w.cfg.Replicas, w.cfg.NoCreate)
			cancel()
		}
		if err == nil {
			err = w.watch(ctx, kv, current)
		}
		if ctx.Err() != nil {
			return
		}
		lagging := errors.Is(err, errWatchLagging)
		if !lagging {
			kv = nil // reopen: the bucket may have been recreated
		}
		wait := bo.Next()
		if lagging || !failing {
			w.log.Warn("bundle watch down; re-creating it", "err", err, "retry_in", wait)
		} else {
			w.log.Debug("bundle watch still down", "err", err, "retry_in", wait)
		}
		failing = !lagging
		if !retry.Sleep(ctx, wait) {
			return
		}
	}
}

// watch runs one KV watch until it ends, ctx is done, or a reconcile finds it
// lagging. It calls current once the initial values have arrived.
func (w *Watcher) watch(ctx context.Context, kv jetstream.KeyValue, current func()) error {
	// The watch's subscription lives as long as this context (nats.go
	// unsubscribes when it ends), so it is this call's own.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kw, err := kv.WatchAll(wctx)
	if err != nil {
		return fmt.Errorf("watch bucket %s: %w", w.cfg.Bucket, err)
	}
	defer kw.Stop()
	if w.bucketCreated.IsZero() {
		// The bucket this watch reads, so the first reconcile can tell a
		// recreated one.
		if created, err := bucketCreated(ctx, kv, w.cfg.Timeout); err == nil {
			w.bucketCreated = created
		}
	}
	reconcile := time.NewTimer(w.cfg.ReconcileInterval)
	defer reconcile.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-kw.Updates():
			if !ok {
				return fmt.Errorf("watch of bucket %s closed", w.cfg.Bucket)
			}
			if e == nil { // the initial values are in
				current()
				w.log.Debug("bundle watch current", "bucket", w.cfg.Bucket)
				continue
			}
			w.handle(ctx, e, true)
		case <-reconcile.C:
			missed, err := w.reconcile(ctx, kv)
			next := w.cfg.ReconcileInterval
			if err != nil {
				// NATS is likely away: look again soon, so a watch that
				// died with it is replaced as soon as NATS is back.
				w.log.Debug("bundle reconcile failed", "err", err)
				next = min(next, time.Second)
			}
			if missed != "" {
				return fmt.Errorf("%w: %s", errWatchLagging, missed)
			}
			reconcile.Reset(next)
		}
	}
}

// reconcile reads every key directly and applies what the watch has not
// delivered. It returns the key the watch missed, if any.
func (w *Watcher) reconcile(ctx context.Context, kv jetstream.KeyValue) (missed string, err error) {
	var errs []error
	// A bucket recreated (a NATS store lost and rebuilt) numbers its
	// revisions from 1 again, below the ones this node handled, and its
	// watch may have died without a word: a new creation time says so, and
	// the revisions seen before stop counting.
	if created, err := bucketCreated(ctx, kv, w.cfg.Timeout); err != nil {
		errs = append(errs, err)
	} else {
		if !w.bucketCreated.IsZero() && !created.Equal(w.bucketCreated) {
			w.log.Warn("bundle bucket was recreated; reading it anew", "bucket", w.cfg.Bucket)
			clear(w.rev)
			clear(w.revSum)
			missed = "bucket recreated"
		}
		w.bucketCreated = created
	}
	for _, key := range []string{KeyTrustMaterial, KeyPolicyBundle, KeyFreshness} {
		gctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
		e, err := kv.Get(gctx, key)
		cancel()
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", key, err))
			continue
		}
		if w.handle(ctx, e, false) {
			w.log.Info("bundle reconcile found an update the watch had not delivered", "key", key, "revision", e.Revision())
			missed = key
		}
	}
	return missed, errors.Join(errs...)
}

// bucketCreated returns when kv's stream was created.
func bucketCreated(ctx context.Context, kv jetstream.KeyValue, timeout time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := kv.Status(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("bucket status: %w", err)
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return time.Time{}, errors.New("bucket status without stream info")
	}
	return bs.StreamInfo().Created, nil
}
