package bundlekv_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/bundlekv"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

func TestPublish(t *testing.T) {
	s := natstest.Server(t)
	js := natstest.JetStream(t, natstest.Connect(t, s.ClientURL()))
	k := newKeys(t)
	now := time.Now()
	t1, p1 := k.trustDoc(t, 1), k.policyDoc(t, 1, now)
	k.writeFiles(t, t1, p1)

	pub := k.publisher(t, js, false)
	res, err := pub.Publish(t.Context())
	if err != nil {
		t.Fatalf("first Publish: %v", err)
	}
	for _, r := range res {
		if !r.Put {
			t.Errorf("first Publish: %s not put", r.Kind)
		}
	}
	kv, err := js.KeyValue(t.Context(), bundlekv.DefaultBucket)
	if err != nil {
		t.Fatalf("bucket: %v", err)
	}
	for key, want := range map[string][]byte{bundlekv.KeyTrustMaterial: t1, bundlekv.KeyPolicyBundle: p1} {
		e, err := kv.Get(t.Context(), key)
		if err != nil || string(e.Value()) != string(want) {
			t.Errorf("bucket %s = %q, %v; want the exact file bytes", key, e.Value(), err)
		}
	}

	t.Run("same files again is a no-op", func(t *testing.T) {
		res, err := k.publisher(t, js, false).Publish(t.Context())
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		for _, r := range res {
			if r.Put {
				t.Errorf("%s put again", r.Kind)
			}
		}
		st, err := kv.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if st.Values() != 2 {
			t.Errorf("bucket holds %d values, want 2 (nothing new written)", st.Values())
		}
	})

	t.Run("rollback refused and nothing put", func(t *testing.T) {
		k.writeFiles(t, k.trustDoc(t, 5), k.policyDoc(t, 5, now))
		if _, err := k.publisher(t, js, false).Publish(t.Context()); err != nil {
			t.Fatalf("Publish seq 5: %v", err)
		}
		for _, tc := range []struct {
			name          string
			trust, policy int64
			kind          bundlekv.Kind
		}{
			{"lower policy", 6, 4, bundlekv.KindPolicyBundle},
			{"equal trust, different bytes", 5, 6, bundlekv.KindTrustMaterial},
		} {
			t.Run(tc.name, func(t *testing.T) {
				trust := k.trustDoc(t, tc.trust)
				if tc.trust == 5 {
					// Other bytes with the same sequence.
					trust = k.sign(t, k.bundle, map[string]any{
						"version": "trustplane-trust-material-v1", "kind": "trust_material", "sequence": 5,
						"issued_at": "2020-01-01T00:00:00Z", "issuers": []any{}})
				}
				k.writeFiles(t, trust, k.policyDoc(t, tc.policy, now))
				_, err := k.publisher(t, js, false).Publish(t.Context())
				rb, ok := errors.AsType[*bundlekv.RollbackError](err)
				if !ok || rb.Kind != tc.kind || rb.Current != 5 {
					t.Fatalf("Publish = %v, want a rollback of the %s over 5", err, tc.kind)
				}
				for _, key := range []string{bundlekv.KeyTrustMaterial, bundlekv.KeyPolicyBundle} {
					if e, err := kv.Get(t.Context(), key); err != nil || bundleSeq(t, e.Value()) != 5 {
						t.Errorf("after a refused publish, %s changed", key)
					}
				}
			})
		}
	})

	t.Run("unknown signing key refused before any put", func(t *testing.T) {
		other := newKeys(t, "bundle-2")
		k.writeFiles(t, other.trustDoc(t, 9), other.policyDoc(t, 9, now))
		_, err := k.publisher(t, js, false).Publish(t.Context())
		if !errors.Is(err, bundle.ErrUnknownKey) {
			t.Fatalf("Publish = %v, want ErrUnknownKey", err)
		}
	})
}

func TestPublishTooLarge(t *testing.T) {
	s := natstest.Server(t)
	js := natstest.JetStream(t, natstest.Connect(t, s.ClientURL()))
	k := newKeys(t)
	// A 1.1 MB revocation: above the default max payload of 1 MiB.
	revs := []any{map[string]any{"type": "jti", "value": strings.Repeat("x", 1100<<10)}}
	k.writeFiles(t, k.trustDoc(t, 1), k.policyDoc(t, 1, time.Now(), map[string]any{"revocations": revs}))
	_, err := k.publisher(t, js, false).Publish(t.Context())
	if err == nil || !strings.Contains(err.Error(), "max payload") {
		t.Fatalf("Publish = %v, want a max payload error", err)
	}
	kv, err := js.KeyValue(t.Context(), bundlekv.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(t.Context(), bundlekv.KeyTrustMaterial); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("trust material put although the policy was refused: %v", err)
	}
}

func TestPublisherWatchAndBeacons(t *testing.T) {
	s := natstest.Server(t)
	js := natstest.JetStream(t, natstest.Connect(t, s.ClientURL()))
	k := newKeys(t)
	k.writeFiles(t, k.trustDoc(t, 1), k.policyDoc(t, 1, time.Now()))
	pub, err := bundlekv.NewPublisher(bundlekv.PublisherConfig{JetStream: js, TrustMaterial: k.trustPath,
		PolicyBundle: k.policyPath, Options: k.options(), BeaconKey: &k.beacon,
		BeaconInterval: 50 * time.Millisecond, Watch: true, WatchInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(t.Context()); err != nil {
		t.Fatal(err)
	}
	run(t, pub.Run)
	kv, err := js.KeyValue(t.Context(), bundlekv.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	beaconAfter := func(since time.Time) func() error {
		return func() error {
			e, err := kv.Get(t.Context(), bundlekv.KeyFreshness)
			if err != nil {
				return err
			}
			b, err := bundle.ParseBeacon(e.Value(), []bundle.BeaconVerifyKey{k.beaconPub})
			if err != nil {
				return err
			}
			if !b.IssuedAt.After(since) {
				return fmt.Errorf("newest beacon issued %s", b.IssuedAt)
			}
			return nil
		}
	}
	testwait.Until(t, 5*time.Second, "a beacon", beaconAfter(time.Now()))

	k.writeFiles(t, k.trustDoc(t, 2), k.policyDoc(t, 2, time.Now()))
	testwait.Until(t, 5*time.Second, "watched files republished", func() error {
		e, err := kv.Get(t.Context(), bundlekv.KeyPolicyBundle)
		if err != nil {
			return err
		}
		if got := bundleSeq(t, e.Value()); got != 2 {
			return fmt.Errorf("policy sequence %d", got)
		}
		return nil
	})
	testwait.Until(t, 5*time.Second, "beacons for the new pair", func() error {
		e, err := kv.Get(t.Context(), bundlekv.KeyFreshness)
		if err != nil {
			return err
		}
		if got := bundleSeq(t, e.Value()); got != 2 {
			return fmt.Errorf("beacon sequence %d", got)
		}
		return nil
	})
}

// bundleSeq reads a document's sequence without verifying it.
func bundleSeq(t testing.TB, b []byte) int64 {
	t.Helper()
	var v struct{ Sequence int64 }
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("sequence of %q: %v", b, err)
	}
	return v.Sequence
}
