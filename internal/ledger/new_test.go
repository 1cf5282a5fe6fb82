package ledger_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
)

func TestNewConfigErrors(t *testing.T) {
	js := singleNode(t)
	tests := []struct {
		name    string
		cfg     ledger.Config
		wantErr string
	}{
		{"no JetStream", ledger.Config{MaxAge: time.Minute}, "JetStream is required"},
		{"no max age", ledger.Config{JetStream: js}, "max age 0s: must be positive"},
		{"negative max age", ledger.Config{JetStream: js, MaxAge: -time.Second}, "must be positive"},
		{"bad bucket", ledger.Config{JetStream: js, MaxAge: time.Minute, Bucket: "A.B"}, `bucket name "A.B"`},
		{"too many replicas", ledger.Config{JetStream: js, MaxAge: time.Minute, Replicas: 7}, "replicas 7"},
		{"negative replicas", ledger.Config{JetStream: js, MaxAge: time.Minute, Replicas: -1}, "replicas -1"},
		{"negative timeout", ledger.Config{JetStream: js, MaxAge: time.Minute, Timeout: -time.Second}, "timeout -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ledger.New(t.Context(), tt.cfg)
			if err == nil {
				l.Close()
				t.Fatalf("New(%s) = nil error, want %q", tt.name, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New(%s) = %q, want it to contain %q", tt.name, err, tt.wantErr)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	js := singleNode(t)
	l := newLedger(t, ledger.Config{JetStream: js})
	if err := l.Ping(t.Context()); err != nil {
		t.Fatalf("Ping = %v", err)
	}
	st, err := js.Stream(t.Context(), "KV_"+ledger.DefaultBucket)
	if err != nil {
		t.Fatalf("bucket %s: %v", ledger.DefaultBucket, err)
	}
	cfg := st.CachedInfo().Config
	if cfg.MaxMsgsPerSubject != 1 || cfg.MaxAge != testMaxAge || cfg.Replicas != 1 || cfg.Storage != jetstream.FileStorage || !cfg.AllowMsgTTL {
		t.Errorf("bucket config = history %d, max age %v, replicas %d, storage %v, per-key TTL %t; want 1, %v, 1, file, true",
			cfg.MaxMsgsPerSubject, cfg.MaxAge, cfg.Replicas, cfg.Storage, cfg.AllowMsgTTL, testMaxAge)
	}
	// Issue 12: nobody may purge, delete or roll up a consumed key, and a
	// written key cannot be replaced.
	if !cfg.DenyDelete || !cfg.DenyPurge || cfg.AllowRollup || !cfg.DiscardNewPerSubject || cfg.Discard != jetstream.DiscardNew {
		t.Errorf("bucket locks = deny delete %t, deny purge %t, roll-up %t, discard new per subject %t (%v); want true, true, false, true (new)",
			cfg.DenyDelete, cfg.DenyPurge, cfg.AllowRollup, cfg.DiscardNewPerSubject, cfg.Discard)
	}
}

// TestNewExistingBucket: a second node finds the bucket the first made; a
// bucket that cannot keep the ledger's guarantees is a clear error.
func TestNewExistingBucket(t *testing.T) {
	js := singleNode(t)
	newLedger(t, ledger.Config{JetStream: js, Bucket: "SAME"})
	// The same configuration, and a longer max age (another node's larger
	// lifetime setting), are fine.
	second := newLedger(t, ledger.Config{JetStream: js, Bucket: "SAME"})
	newLedger(t, ledger.Config{JetStream: js, Bucket: "SAME", MaxAge: time.Minute})
	if err := second.Consume(t.Context(), key("x"), time.Minute, core.LedgerEntry{}); err != nil {
		t.Errorf("Consume on a found bucket = %v", err)
	}

	mustCreate := func(cfg jetstream.KeyValueConfig) {
		t.Helper()
		if _, err := js.CreateKeyValue(t.Context(), cfg); err != nil {
			t.Fatalf("create bucket %s: %v", cfg.Bucket, err)
		}
	}
	mustCreate(jetstream.KeyValueConfig{Bucket: "NOTTL", History: 1, TTL: testMaxAge})
	mustCreate(jetstream.KeyValueConfig{Bucket: "HISTORY", History: 5, TTL: testMaxAge, LimitMarkerTTL: time.Second})
	mustCreate(jetstream.KeyValueConfig{Bucket: "SHORT", History: 1, TTL: time.Minute, LimitMarkerTTL: time.Second})

	tests := []struct {
		name    string
		cfg     ledger.Config
		wantErr string
	}{
		{"more replicas", ledger.Config{Bucket: "SAME", Replicas: 3}, "exists with 1 replicas, want 3"},
		{"no per-key TTL", ledger.Config{Bucket: "NOTTL"}, "without per-key TTLs"},
		{"history", ledger.Config{Bucket: "HISTORY"}, "history 5, want 1"},
		{"max age too short", ledger.Config{Bucket: "SHORT"}, "max age 1m0s, shorter than the 16m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.JetStream, tt.cfg.MaxAge = js, testMaxAge
			l, err := ledger.New(t.Context(), tt.cfg)
			if err == nil {
				l.Close()
				t.Fatalf("New on bucket %s = nil error, want %q", tt.cfg.Bucket, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "bucket "+tt.cfg.Bucket) {
				t.Errorf("New on bucket %s = %q, want it to name the bucket and say %q", tt.cfg.Bucket, err, tt.wantErr)
			}
			t.Logf("New on bucket %s: %v", tt.cfg.Bucket, err)
		})
	}
}

// TestNewConcurrent starts many nodes at once on one bucket (SPEC §10.1).
func TestNewConcurrent(t *testing.T) {
	s := natstest.Server(t)
	const nodes = 8
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	for i := range nodes {
		js := natstest.JetStream(t, natstest.Connect(t, s.ClientURL()))
		wg.Go(func() {
			l, err := ledger.New(t.Context(), ledger.Config{JetStream: js, MaxAge: testMaxAge})
			if err == nil {
				l.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("node %d: New = %v", i, err)
		}
	}
}

func TestTTL(t *testing.T) {
	now := time.Unix(1740000100, 0)
	skew := 30 * time.Second
	tests := []struct {
		name string
		exp  time.Time
		skew time.Duration
		want time.Duration
	}{
		{"whole seconds", now.Add(60 * time.Second), skew, 90 * time.Second},
		{"no skew", now.Add(60 * time.Second), 0, 60 * time.Second},
		{"fraction rounds up", now.Add(60*time.Second + time.Nanosecond), skew, 91 * time.Second},
		{"just under a second", now.Add(999 * time.Millisecond), 0, time.Second},
		{"exactly now", now, 0, time.Second},
		{"expired within skew", now.Add(-10 * time.Second), skew, 20 * time.Second},
		{"expired beyond skew", now.Add(-time.Hour), skew, time.Second},
		{"max lifetime", now.Add(900 * time.Second), skew, 930 * time.Second},
		{"max lifetime, iat at now+skew", now.Add(930 * time.Second), skew, 960 * time.Second}, // = bucket max age
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := core.ReplayTTL(tt.exp, tt.skew, now); got != tt.want {
				t.Errorf("TTL(now%+v, %v, now) = %v, want %v", tt.exp.Sub(now), tt.skew, got, tt.want)
			}
		})
	}
}
