package bundlekv_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/bundlekv"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// syncLog is a log sink shared with the publisher's goroutine.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *syncLog) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// beaconOf reads the bucket's beacon, verified.
func beaconOf(t testing.TB, kv jetstream.KeyValue, k *keys) (*bundle.Beacon, uint64, error) {
	e, err := kv.Get(t.Context(), bundlekv.KeyFreshness)
	if err != nil {
		return nil, 0, err
	}
	b, err := bundle.ParseBeacon(e.Value(), []bundle.BeaconVerifyKey{k.beaconPub})
	return b, e.Revision(), err
}

// TestWatchPublisherBeaconsNewerPair: a one-shot publish of a newer pair
// beside a running publish --watch is beaconed by the watcher within one
// beacon interval, and the watcher never goes back to the older pair (it
// used to beacon the old pair, so realtime routes of the new one went
// stale).
func TestWatchPublisherBeaconsNewerPair(t *testing.T) {
	s := natstest.Server(t)
	js := natstest.JetStream(t, natstest.Connect(t, s.ClientURL()))
	k := newKeys(t)
	k.writeFiles(t, k.trustDoc(t, 1), k.policyDoc(t, 1, time.Now()))
	var logs syncLog
	watcher, err := bundlekv.NewPublisher(bundlekv.PublisherConfig{JetStream: js, TrustMaterial: k.trustPath,
		PolicyBundle: k.policyPath, Options: k.options(), BeaconKey: &k.beacon,
		BeaconInterval: 50 * time.Millisecond, Watch: true, WatchInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watcher.Publish(t.Context()); err != nil {
		t.Fatal(err)
	}
	run(t, watcher.Run)

	// The one-shot publish: other files, same keys, no beacon key.
	dir := t.TempDir()
	trust2, policy2 := filepath.Join(dir, "trust.json"), filepath.Join(dir, "policy.json")
	if err := os.WriteFile(trust2, k.trustDoc(t, 2), 0o644); err != nil {
		t.Fatal(err)
	}
	pdoc := k.policyDoc(t, 2, time.Now())
	if err := os.WriteFile(policy2, pdoc, 0o644); err != nil {
		t.Fatal(err)
	}
	oneShot, err := bundlekv.NewPublisher(bundlekv.PublisherConfig{JetStream: js, TrustMaterial: trust2, PolicyBundle: policy2, Options: k.options()})
	if err != nil {
		t.Fatal(err)
	}
	published := time.Now()
	if _, err := oneShot.Publish(t.Context()); err != nil {
		t.Fatal(err)
	}
	want, err := bundle.ParsePolicy(pdoc, k.options())
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), bundlekv.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	took := testwait.Until(t, 10*time.Second, "a beacon for the one-shot pair", func() error {
		b, _, err := beaconOf(t, kv, k)
		if err != nil {
			return err
		}
		if b.Sequence != 2 || b.PolicySHA256 != want.SHA256 || !b.IssuedAt.After(published.Add(-time.Second)) {
			return fmt.Errorf("beacon for policy sequence %d", b.Sequence)
		}
		return nil
	})
	t.Logf("the watch publisher beaconed the one-shot pair %s after the publish (beacon interval 50ms)", took)
	// From now on every beacon is for the newer pair.
	_, last, _ := beaconOf(t, kv, k)
	seen := 0
	testwait.Until(t, 10*time.Second, "ten more beacons", func() error {
		b, rev, err := beaconOf(t, kv, k)
		if err != nil {
			return err
		}
		if b.Sequence != 2 {
			t.Fatalf("beacon for policy sequence %d after the newer pair was beaconed", b.Sequence)
		}
		if rev != last {
			seen, last = seen+1, rev
		}
		if seen < 10 {
			return fmt.Errorf("%d new beacons", seen)
		}
		return nil
	})
	if !strings.Contains(logs.String(), "the bucket holds a newer pair") {
		t.Errorf("the watch publisher did not say it adopted the newer pair:\n%s", logs.String())
	}
}

// TestWatchPublisherRefusesUnverifiedPair: a policy in the bucket that does
// not verify is refused loudly, once, naming what was seen; the publisher
// keeps beaconing the pair the nodes hold (they refuse it too), and never
// beacons the refused one.
func TestWatchPublisherRefusesUnverifiedPair(t *testing.T) {
	s := natstest.Server(t)
	js := natstest.JetStream(t, natstest.Connect(t, s.ClientURL()))
	k := newKeys(t)
	k.writeFiles(t, k.trustDoc(t, 1), k.policyDoc(t, 1, time.Now()))
	var logs syncLog
	watcher, err := bundlekv.NewPublisher(bundlekv.PublisherConfig{JetStream: js, TrustMaterial: k.trustPath,
		PolicyBundle: k.policyPath, Options: k.options(), BeaconKey: &k.beacon, BeaconInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	res, err := watcher.Publish(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), bundlekv.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	// Someone with write access puts a policy signed by another key.
	other := newKeys(t, "intruder-1")
	if _, err := kv.Put(t.Context(), bundlekv.KeyPolicyBundle, other.policyDoc(t, 9, time.Now())); err != nil {
		t.Fatal(err)
	}
	_, before, err := beaconOf(t, kv, k)
	if err != nil {
		t.Fatal(err)
	}
	run(t, watcher.Run)
	testwait.Until(t, 10*time.Second, "the refusal in the log", func() error {
		if l := logs.String(); !strings.Contains(l, "does not beacon") || !strings.Contains(l, "policy bundle revision") || !strings.Contains(l, "does not verify") {
			return fmt.Errorf("log so far:\n%s", l)
		}
		return nil
	})
	seen, last := 0, before
	testwait.Until(t, 10*time.Second, "ten more beacons for the pair the nodes hold", func() error {
		b, rev, err := beaconOf(t, kv, k)
		if err != nil {
			return err
		}
		if b.Sequence != 1 || b.PolicySHA256 != res[1].SHA256 {
			t.Fatalf("beacon for policy sequence %d (%s), want the published pair's", b.Sequence, b.PolicySHA256)
		}
		if rev != last {
			seen, last = seen+1, rev
		}
		if seen < 10 {
			return fmt.Errorf("%d new beacons", seen)
		}
		return nil
	})
	if n := strings.Count(logs.String(), "does not beacon"); n != 1 {
		t.Errorf("the refusal was logged %d times, want once per bucket state", n)
	}
}
