package readiness

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/core"
)

var now = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// snapshot is a pair viewed age ago with one realtime route.
func snapshot(age time.Duration) *core.Snapshot {
	return &core.Snapshot{
		Policy: &bundle.Policy{Sequence: 7, SHA256: "aa", Routes: []*bundle.Route{
			{ID: "orders.get", Freshness: bundle.Realtime, FreshnessName: "realtime"},
		}},
		Trust:    &bundle.TrustMaterial{Sequence: 3, SHA256: "bb"},
		ViewTime: now.Add(-age),
	}
}

// body runs Check and returns ready and the body as a client sees it.
func body(t *testing.T, r *Readiness, strict bool) (bool, map[string]any) {
	t.Helper()
	ready, b := r.Check(t.Context(), strict)
	raw, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m["ready"] != ready {
		t.Errorf("body ready = %v, Check returned %v", m["ready"], ready)
	}
	return ready, m
}

func failingNames(t *testing.T, m map[string]any) []string {
	t.Helper()
	var names []string
	for _, f := range m["failing"].([]any) {
		f := f.(map[string]any)
		if f["error"] == "" {
			t.Errorf("failure %v has no error", f)
		}
		names = append(names, f["name"].(string))
	}
	return names
}

func TestCheck(t *testing.T) {
	errDown := errors.New("nats: no responders available for request")
	tests := []struct {
		name        string
		snap        *core.Snapshot
		ledger      error
		stop        bool
		strict      bool
		wantReady   bool
		wantFailing []string
		wantFields  map[string]any
	}{
		{name: "ready", snap: snapshot(time.Second), wantReady: true,
			wantFailing: nil, wantFields: map[string]any{"ledger": "ok"}},
		{name: "no pair", snap: nil,
			wantFailing: []string{"bundle"}, wantFields: map[string]any{"bundle": "missing", "ledger": "ok"}},
		{name: "ledger down", snap: snapshot(time.Second), ledger: errDown,
			wantFailing: []string{"ledger"}, wantFields: map[string]any{"ledger": "unavailable"}},
		{name: "stale realtime is ready", snap: snapshot(time.Minute), wantReady: true,
			wantFields: map[string]any{"ledger": "ok"}},
		{name: "stale realtime strict", snap: snapshot(time.Minute), strict: true,
			wantFailing: []string{"stale_classes"}},
		{name: "shutting down", snap: snapshot(time.Second), stop: true,
			wantFailing: []string{"shutting_down"}, wantFields: map[string]any{"shutting_down": true}},
		{name: "everything wrong", snap: nil, ledger: errDown, stop: true,
			wantFailing: []string{"shutting_down", "bundle", "ledger"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(Config{
				Snapshot:       func() *core.Snapshot { return tt.snap },
				RealtimeWindow: 5 * time.Second,
				Now:            func() time.Time { return now },
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Add("ledger", func(context.Context) error { return tt.ledger }); err != nil {
				t.Fatal(err)
			}
			if tt.stop {
				r.Stop()
			}
			ready, m := body(t, r, tt.strict)
			if ready != tt.wantReady {
				t.Errorf("Check ready = %v, want %v; body %v", ready, tt.wantReady, m)
			}
			if got := failingNames(t, m); !slices.Equal(got, tt.wantFailing) {
				t.Errorf("failing = %q, want %q", got, tt.wantFailing)
			}
			for k, v := range tt.wantFields {
				if m[k] != v {
					t.Errorf("body[%q] = %v, want %v", k, m[k], v)
				}
			}
			if tt.snap != nil {
				// SPEC §10.2: the body always lists sequences, digests, age
				// and stale classes.
				pol, _ := m["policy"].(map[string]any)
				tm, _ := m["trust_material"].(map[string]any)
				if pol["sequence"] != 7.0 || pol["sha256"] != "aa" || tm["sequence"] != 3.0 || tm["sha256"] != "bb" {
					t.Errorf("policy %v, trust_material %v: want sequences 7, 3 and digests aa, bb", pol, tm)
				}
				if _, ok := m["view_age_seconds"].(float64); !ok {
					t.Errorf("view_age_seconds missing: %v", m)
				}
				if _, ok := m["stale_classes"].([]any); !ok {
					t.Errorf("stale_classes missing: %v", m)
				}
			}
		})
	}
}

// TestFailingErrorText: the body names the check and carries its error, so
// an operator reading readyz sees why without the logs.
func TestFailingErrorText(t *testing.T) {
	r, _ := New(Config{Snapshot: func() *core.Snapshot { return snapshot(0) }, Now: func() time.Time { return now }})
	_ = r.Add("ledger", func(context.Context) error { return nil })
	_ = r.Add("audit_stream", func(context.Context) error { return errors.New("stream TPCLUSTER_AUDIT not found") })
	ready, b := r.Check(t.Context(), false)
	got := b.(map[string]any)["failing"].([]Failure)
	want := []Failure{{Name: "audit_stream", Error: "stream TPCLUSTER_AUDIT not found"}}
	if ready || !slices.Equal(got, want) {
		t.Errorf("Check = %v, failing %v; want false, %v", ready, got, want)
	}
}

// TestCheckTimeout: a check that blocks is bounded by Timeout and reported
// as failing, never hangs readyz.
func TestCheckTimeout(t *testing.T) {
	r, _ := New(Config{Snapshot: func() *core.Snapshot { return snapshot(0) }, Timeout: 10 * time.Millisecond, Now: func() time.Time { return now }})
	_ = r.Add("ledger", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	start := time.Now()
	ready, m := body(t, r, false)
	t.Logf("a blocking check returned after %v", time.Since(start))
	if ready || !slices.Equal(failingNames(t, m), []string{"ledger"}) {
		t.Errorf("blocking check: ready %v, body %v; want unready with ledger failing", ready, m)
	}
}

func TestAdd(t *testing.T) {
	r, _ := New(Config{Snapshot: func() *core.Snapshot { return nil }})
	ok := func(context.Context) error { return nil }
	for _, tt := range []struct {
		name    string
		check   Check
		wantErr bool
	}{
		{"ledger", ok, false},
		{"ledger", ok, true}, // twice
		{"policy", ok, true}, // a built-in field
		{"ready", ok, true},
		{"Audit Stream", ok, true},
		{"", ok, true},
		{"spool_level", nil, true},
		{"spool_level", ok, false},
	} {
		if err := r.Add(tt.name, tt.check); (err != nil) != tt.wantErr {
			t.Errorf("Add(%q) = %v, want error %v", tt.name, err, tt.wantErr)
		}
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New without Snapshot = nil error")
	}
}
