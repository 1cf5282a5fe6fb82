package bundlekv_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/bundlekv"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// TestWatcherRefuses: rollbacks, unknown keys and broken signatures put
// straight into the bucket change nothing, are reported and counted; a valid
// update after them applies.
func TestWatcherRefuses(t *testing.T) {
	s := natstest.Server(t)
	js := natstest.JetStream(t, natstest.Connect(t, s.ClientURL()))
	k := newKeys(t)
	ev := &events{}
	reader := sdkmetric.NewManualReader()
	w := k.newWatcher(t, js, ev, func(c *bundlekv.WatcherConfig) {
		c.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	})
	// The watcher starts first and creates the bucket (SPEC §8.1).
	run(t, w.Run)
	kv := bucket(t, js)

	now := time.Now()
	k.writeFiles(t, k.trustDoc(t, 2), k.policyDoc(t, 2, now))
	if _, err := k.publisher(t, js, false).Publish(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitPair(t, w, 2, 2)
	// OnApply follows the swap; both documents of the first pair are reported.
	testwait.Until(t, 5*time.Second, "two applied events", func() error {
		if got := len(ev.applies()); got != 2 {
			return fmt.Errorf("OnApply called %d times", got)
		}
		return nil
	})
	good := w.Snapshot()

	other := newKeys(t, "bundle-2")
	tampered := k.policyDoc(t, 7, now)
	tampered[len(tampered)/2] ^= 0x01 // inside the document, not the signature
	for _, tc := range []struct {
		name string
		key  string
		data []byte
		want func(error) bool
	}{
		{"lower policy sequence", bundlekv.KeyPolicyBundle, k.policyDoc(t, 1, now), isRollback},
		{"equal trust sequence, other bytes", bundlekv.KeyTrustMaterial, k.sign(t, k.bundle, map[string]any{
			"version": "trustplane-trust-material-v1", "kind": "trust_material", "sequence": 2,
			"issued_at": "2020-01-01T00:00:00Z", "issuers": []any{}}), isRollback},
		{"unknown signing key", bundlekv.KeyPolicyBundle, other.policyDoc(t, 9, now), is(bundle.ErrUnknownKey)},
		{"tampered", bundlekv.KeyPolicyBundle, tampered, func(err error) bool { return err != nil && !isRollback(err) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(ev.rejections())
			if _, err := kv.Put(t.Context(), tc.key, tc.data); err != nil {
				t.Fatal(err)
			}
			testwait.Until(t, 5*time.Second, "rejection reported", func() error {
				if len(ev.rejections()) == before {
					return errors.New("none yet")
				}
				return nil
			})
			r := ev.rejections()[before]
			if !tc.want(r.Err) {
				t.Errorf("rejection error = %v", r.Err)
			}
			if r.SHA256 == "" {
				t.Errorf("rejection without a digest")
			}
			if got := w.Snapshot(); got.Policy != good.Policy || got.Trust != good.Trust {
				t.Errorf("pair changed to (%d, %d) after a refused document", got.Trust.Sequence, got.Policy.Sequence)
			}
		})
	}
	if got := counter(t, reader, "tpcluster.bundle.rejected", "policy_bundle"); got != 3 {
		t.Errorf("rejected{kind=policy_bundle} = %d, want 3", got)
	}
	if got := counter(t, reader, "tpcluster.bundle.rejected", "trust_material"); got != 1 {
		t.Errorf("rejected{kind=trust_material} = %d, want 1", got)
	}

	k.writeFiles(t, k.trustDoc(t, 3), k.policyDoc(t, 10, now))
	if _, err := k.publisher(t, js, false).Publish(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitPair(t, w, 3, 10)
}

func isRollback(err error) bool {
	_, ok := errors.AsType[*bundlekv.RollbackError](err)
	return ok
}

func is(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

// TestWatcherViewTime: the view time is the later of the policy's issued_at
// and the newest valid beacon covering the pair (SPEC §8.3).
func TestWatcherViewTime(t *testing.T) {
	s := natstest.Server(t)
	js := natstest.JetStream(t, natstest.Connect(t, s.ClientURL()))
	k := newKeys(t)
	ev := &events{}
	w := k.newWatcher(t, js, ev)
	run(t, w.Run)
	kv := bucket(t, js)

	issued := time.Now().Add(-time.Hour).Truncate(time.Second)
	k.writeFiles(t, k.trustDoc(t, 1), k.policyDoc(t, 1, issued))
	if _, err := k.publisher(t, js, false).Publish(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitPair(t, w, 1, 1)
	snap := w.Snapshot()
	if !snap.ViewTime.Equal(issued) {
		t.Fatalf("view time without beacons = %s, want the policy's issued_at %s", snap.ViewTime, issued)
	}
	if st := w.Status(); len(st.StaleClasses) != 1 || st.StaleClasses[0] != "realtime" {
		t.Errorf("stale classes an hour after issue = %v, want [realtime]", st.StaleClasses)
	}

	putBeacon := func(p *bundle.Policy, tm *bundle.TrustMaterial, at time.Time, key bundle.BeaconSigningKey) {
		t.Helper()
		b, err := bundle.SignBeacon(p, tm, at, key, "test")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(t.Context(), bundlekv.KeyFreshness, b); err != nil {
			t.Fatal(err)
		}
	}
	viewTime := func(want time.Time) func() error {
		return func() error {
			if got := w.Snapshot().ViewTime; !got.Equal(want) {
				return fmt.Errorf("view time %s", got)
			}
			return nil
		}
	}
	b1 := time.Now().Add(-10 * time.Second).Truncate(time.Second)
	putBeacon(snap.Policy, snap.Trust, b1, k.beacon)
	testwait.Until(t, 5*time.Second, "covering beacon moves the view time", viewTime(b1))

	t.Run("older, other-pair and future beacons do not move it", func(t *testing.T) {
		otherPolicy, err := bundle.ParsePolicy(k.policyDoc(t, 99, issued), k.options())
		if err != nil {
			t.Fatal(err)
		}
		before := len(ev.rejections())
		putBeacon(snap.Policy, snap.Trust, b1.Add(-5*time.Second), k.beacon)           // older: ignored
		putBeacon(otherPolicy, snap.Trust, time.Now().Truncate(time.Second), k.beacon) // another pair
		putBeacon(snap.Policy, snap.Trust, time.Now().Add(time.Hour), k.beacon)        // future: refused
		// The watch delivers in order: once the last is refused, the two
		// before it have been handled.
		testwait.Until(t, 5*time.Second, "future beacon refused", func() error {
			if len(ev.rejections()) == before {
				return errors.New("none yet")
			}
			return nil
		})
		if r := ev.rejections()[before]; r.Kind != bundlekv.KindBeacon {
			t.Errorf("rejection kind %s, want %s", r.Kind, bundlekv.KindBeacon)
		}
		if err := viewTime(b1)(); err != nil {
			t.Error(err)
		}
	})
	t.Run("publisher beacons keep it fresh", func(t *testing.T) {
		pub := k.publisher(t, js, true)
		if _, err := pub.Publish(t.Context()); err != nil {
			t.Fatal(err)
		}
		run(t, pub.Run)
		testwait.Until(t, 5*time.Second, "fresh view", func() error {
			if st := w.Status(); st.ViewAgeSeconds > 1 || len(st.StaleClasses) != 0 {
				return fmt.Errorf("status %+v", st)
			}
			return nil
		})
	})
}

// TestWatcherCache: a node decides from its cached pair before NATS answers
// (SPEC §8.2); a cache no longer verifying is ignored.
func TestWatcherCache(t *testing.T) {
	s := natstest.Server(t)
	url := s.ClientURL()
	js := natstest.JetStream(t, natstest.Connect(t, url))
	k := newKeys(t)
	cache := t.TempDir()
	k.writeFiles(t, k.trustDoc(t, 4), k.policyDoc(t, 4, time.Now()))
	if _, err := k.publisher(t, js, false).Publish(t.Context()); err != nil {
		t.Fatal(err)
	}
	{
		w := k.newWatcher(t, js, nil, func(c *bundlekv.WatcherConfig) { c.CacheDir = cache })
		ctx, cancel := contextWithCancel(t)
		done := make(chan error)
		go func() { done <- w.Run(ctx) }()
		waitPair(t, w, 4, 4)
		cancel()
		<-done
	}

	stopped := natstest.StopServer(t, s)
	down := natstest.JetStream(t, natstest.Connect(t, url)) // not connected: retries in the background
	ev := &events{}
	w := k.newWatcher(t, down, ev, func(c *bundlekv.WatcherConfig) { c.CacheDir = cache })
	if s := w.Snapshot(); s == nil || s.Policy.Sequence != 4 || s.Trust.Sequence != 4 {
		t.Fatalf("snapshot from cache = %+v, want the pair (4, 4) before NATS answers", s)
	}
	run(t, w.Run)
	testwait.Until(t, 5*time.Second, "cached pair reported applied", func() error {
		if len(ev.applies()) != 2 {
			return fmt.Errorf("%d applied events", len(ev.applies()))
		}
		return nil
	})

	natstest.RestartServer(t, stopped)
	k.writeFiles(t, k.trustDoc(t, 5), k.policyDoc(t, 5, time.Now()))
	if _, err := k.publisher(t, natstest.JetStream(t, natstest.Connect(t, url)), false).Publish(t.Context()); err != nil {
		t.Fatal(err)
	}
	took := waitPair(t, w, 5, 5)
	t.Logf("watcher started while NATS was down applied the next pair %s after its publish", took.Round(time.Millisecond))

	t.Run("cache with a key no longer accepted", func(t *testing.T) {
		rotated := newKeys(t, "bundle-3")
		w := rotated.newWatcher(t, down, nil, func(c *bundlekv.WatcherConfig) { c.CacheDir = cache })
		if s := w.Snapshot(); s != nil {
			t.Errorf("snapshot = pair (%d, %d), want none: the cache was signed by a key no longer accepted", s.Trust.Sequence, s.Policy.Sequence)
		}
	})
}

// TestWatcherSurvivesServerRestart: a bundle published after a NATS restart
// reaches the watcher without restarting it.
func TestWatcherSurvivesServerRestart(t *testing.T) {
	s := natstest.Server(t)
	url := s.ClientURL()
	js := natstest.JetStream(t, natstest.Connect(t, url))
	k := newKeys(t)
	k.writeFiles(t, k.trustDoc(t, 1), k.policyDoc(t, 1, time.Now()))
	if _, err := k.publisher(t, js, false).Publish(t.Context()); err != nil {
		t.Fatal(err)
	}
	w := k.newWatcher(t, js, nil)
	run(t, w.Run)
	waitPair(t, w, 1, 1)

	natstest.RestartServer(t, natstest.StopServer(t, s))
	k.writeFiles(t, k.trustDoc(t, 2), k.policyDoc(t, 2, time.Now()))
	pubJS := natstest.JetStream(t, natstest.Connect(t, url))
	testwait.Until(t, 10*time.Second, "publish after restart", func() error {
		_, err := k.publisher(t, pubJS, false).Publish(t.Context())
		return err
	})
	took := waitPair(t, w, 2, 2)
	t.Logf("pair published after a NATS restart applied in %s", took.Round(time.Millisecond))
}

// TestWatcherBucketRecreated: a bucket deleted and created again (a NATS
// store lost and rebuilt) numbers its revisions from 1 again; a new pair
// published there reaches the watcher although its revisions equal those
// of the documents the watcher applied from the old bucket.
func TestWatcherBucketRecreated(t *testing.T) {
	s := natstest.Server(t)
	js := natstest.JetStream(t, natstest.Connect(t, s.ClientURL()))
	k := newKeys(t)
	k.writeFiles(t, k.trustDoc(t, 1), k.policyDoc(t, 1, time.Now()))
	if _, err := k.publisher(t, js, false).Publish(t.Context()); err != nil {
		t.Fatal(err)
	}
	w := k.newWatcher(t, js, nil)
	run(t, w.Run)
	waitPair(t, w, 1, 1)

	if err := js.DeleteKeyValue(t.Context(), bundlekv.DefaultBucket); err != nil {
		t.Fatal(err)
	}
	k.writeFiles(t, k.trustDoc(t, 2), k.policyDoc(t, 2, time.Now()))
	testwait.Until(t, 10*time.Second, "publish into the new bucket", func() error {
		res, err := k.publisher(t, js, false).Publish(t.Context())
		if err == nil && (res[0].Revision != 1 || res[1].Revision != 2) {
			t.Logf("revisions in the new bucket: %d, %d", res[0].Revision, res[1].Revision)
		}
		return err
	})
	waitPair(t, w, 2, 2)
}

func TestStatus(t *testing.T) {
	s := natstest.Server(t)
	nc := natstest.Connect(t, s.ClientURL())
	js := natstest.JetStream(t, nc)
	k := newKeys(t)
	k.writeFiles(t, k.trustDoc(t, 3), k.policyDoc(t, 8, time.Now()))
	if _, err := k.publisher(t, js, false).Publish(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"node-b", "node-a"} {
		w := k.newWatcher(t, natstest.JetStream(t, natstest.Connect(t, s.ClientURL())), nil,
			func(c *bundlekv.WatcherConfig) { c.NodeID = id })
		run(t, w.Run)
		waitPair(t, w, 3, 8)
	}
	var replies []bundlekv.Status
	testwait.Until(t, 10*time.Second, "two replies", func() error {
		ctx, cancel := contextWithTimeout(t, 500*time.Millisecond)
		defer cancel()
		var err error
		replies, _, err = bundlekv.GatherStatus(ctx, nc)
		if err != nil {
			return err
		}
		if len(replies) != 2 {
			return fmt.Errorf("%d replies", len(replies))
		}
		return nil
	})
	for i, id := range []string{"node-a", "node-b"} {
		r := replies[i]
		if r.NodeID != id || !r.Loaded || r.PolicySequence != 8 || r.TrustSequence != 3 || len(r.PolicySHA256) != 64 {
			t.Errorf("reply %d = %+v, want %s on (3, 8)", i, r, id)
		}
	}
}

func bucket(t testing.TB, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	var kv jetstream.KeyValue
	testwait.Until(t, 5*time.Second, "bundle bucket", func() error {
		var err error
		kv, err = js.KeyValue(t.Context(), bundlekv.DefaultBucket)
		return err
	})
	return kv
}

// counter reads a counter's value for one kind.
func counter(t testing.TB, r *sdkmetric.ManualReader, name, kind string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				t.Fatalf("%s is %T", name, m.Data)
			}
			for _, dp := range sum.DataPoints {
				if v, _ := dp.Attributes.Value("kind"); v.AsString() == kind {
					return dp.Value
				}
			}
		}
	}
	return 0
}

// TestWatcherFuturePolicy: a policy dated an hour ahead does not stay fresh
// for that hour: its view time is when the node applied it (review finding;
// the same bound as beacons).
func TestWatcherFuturePolicy(t *testing.T) {
	s := natstest.Server(t)
	js := natstest.JetStream(t, natstest.Connect(t, s.ClientURL()))
	k := newKeys(t)
	w := k.newWatcher(t, js, &events{})
	run(t, w.Run)
	future := time.Now().Add(time.Hour).Truncate(time.Second)
	k.writeFiles(t, k.trustDoc(t, 1), k.policyDoc(t, 1, future))
	before := time.Now()
	if _, err := k.publisher(t, js, false).Publish(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitPair(t, w, 1, 1)
	vt := w.Snapshot().ViewTime
	if vt.After(time.Now()) || vt.Before(before.Add(-time.Second)) {
		t.Errorf("view time of a policy issued at %s = %s, want when it was applied (about %s)", future, vt, before)
	}
}

// TestWatcherBucketRecreatedLower: the old bucket's revisions were higher
// than the new bucket's first ones (several publishes before the loss); the
// watcher notices the recreated bucket at its next reconcile and applies the
// new pair, whether or not its watch saw the deletion.
func TestWatcherBucketRecreatedLower(t *testing.T) {
	s := natstest.Server(t)
	js := natstest.JetStream(t, natstest.Connect(t, s.ClientURL()))
	k := newKeys(t)
	w := k.newWatcher(t, js, nil, func(c *bundlekv.WatcherConfig) { c.ReconcileInterval = 200 * time.Millisecond })
	run(t, w.Run)
	for seq := int64(1); seq <= 3; seq++ {
		k.writeFiles(t, k.trustDoc(t, seq), k.policyDoc(t, seq, time.Now()))
		if _, err := k.publisher(t, js, false).Publish(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	waitPair(t, w, 3, 3)
	if err := js.DeleteKeyValue(t.Context(), bundlekv.DefaultBucket); err != nil {
		t.Fatal(err)
	}
	k.writeFiles(t, k.trustDoc(t, 4), k.policyDoc(t, 4, time.Now()))
	testwait.Until(t, 10*time.Second, "publish into the new bucket", func() error {
		_, err := k.publisher(t, js, false).Publish(t.Context())
		return err
	})
	waitPair(t, w, 4, 4)
}
