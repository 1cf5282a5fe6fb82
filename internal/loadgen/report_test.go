package loadgen

import (
	"bytes"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/reason"
)

// TestPercentiles records 1..10000 µs once each: the percentiles are known
// to HDR's precision (3 significant digits).
func TestPercentiles(t *testing.T) {
	h := newHist()
	for us := 1; us <= 10000; us++ {
		recordLatency(h, time.Duration(us)*time.Microsecond)
	}
	recordLatency(h, 2*time.Hour) // clamped to the top, not lost
	l := latencyOf(h)
	for _, tc := range []struct {
		name      string
		got, want float64
	}{
		{"p50", l.P50, 5.0}, {"p90", l.P90, 9.0}, {"p99", l.P99, 9.9}, {"p99.9", l.P999, 9.99},
		{"max", l.Max, float64(histMax) / 1000},
	} {
		if math.Abs(tc.got-tc.want) > tc.want*0.002 {
			t.Errorf("%s = %v ms, want %v", tc.name, tc.got, tc.want)
		}
	}
	if h.TotalCount() != 10001 {
		t.Errorf("count = %d, want 10001", h.TotalCount())
	}
}

func TestWantOutcome(t *testing.T) {
	allowed := outcome{status: 200, name: outcomeAllowed}
	replay := outcome{status: 409, name: string(reason.JTIReplay)}
	mismatch := outcome{status: 401, name: string(reason.RequestBindingMismatch)}
	sig := outcome{status: 401, name: string(reason.PassportSignatureInvalid)}
	malformed := outcome{status: 401, name: string(reason.PassportMalformed)}
	for _, tc := range []struct {
		kind Kind
		got  outcome
		want string
	}{
		{Fresh, allowed, ""},
		{Fresh, replay, ""}, // a node got the same request first; checkGroups counts
		{Replay, replay, ""},
		{Replay, allowed, ""},
		{Fresh, mismatch, "allowed or jti_replay"},
		{Tampered, mismatch, ""},
		{Tampered, allowed, "request_binding_mismatch"},
		{BadSignature, sig, ""},
		{BadSignature, malformed, "passport_signature_invalid"},
		{Malformed, malformed, ""},
		{Malformed, outcome{status: 500, name: "http_500"}, "passport_malformed"},
	} {
		if got := wantOutcome(tc.kind, tc.got); got != tc.want {
			t.Errorf("wantOutcome(%s, %s) = %q, want %q", tc.kind, tc.got.name, got, tc.want)
		}
	}
}

func TestCheckGroups(t *testing.T) {
	counts := func(v ...int32) []atomic.Int32 {
		a := make([]atomic.Int32, len(v))
		for i, x := range v {
			a[i].Store(x)
		}
		return a
	}
	// Group 0: allowed once of 3 answers (fine). 1: allowed twice (a
	// replay let through). 2: 2 answers, none allowed, no transport error.
	// 3: none allowed but one send failed in transport (not counted
	// again). 4: never sent.
	r := &Report{Outcomes: map[string]int64{}}
	r.byKind[Fresh], r.byKind[Replay], r.byKind[Tampered] = 4, 5, 2
	r.checkGroups(counts(1, 2, 0, 0, 0), counts(3, 3, 2, 1, 0), counts(0, 0, 0, 1, 0))
	if r.Errors.DoubleAllow != 1 || r.Errors.NeverAllowed != 1 {
		t.Errorf("double allow %d, never allowed %d; want 1 and 1", r.Errors.DoubleAllow, r.Errors.NeverAllowed)
	}
	want := map[string]int64{"allowed": 4, "jti_replay": 5, "request_binding_mismatch": 2}
	for k, v := range want {
		if r.Expected[k] != v {
			t.Errorf("expected[%s] = %d, want %d", k, r.Expected[k], v)
		}
	}
	if len(r.Expected) != len(want) {
		t.Errorf("expected = %v, want %v", r.Expected, want)
	}
}

func TestWriteText(t *testing.T) {
	r := &Report{
		Mode: "open", Expect: "verifier", Targets: []string{"http://127.0.0.1:1"}, Workers: 4, RatePerSec: 100,
		Planned: 10, Started: 10, Answered: 10, ElapsedSeconds: 0.1, ThroughputPerSec: 100,
		Outcomes: map[string]int64{"allowed": 9, "jti_replay": 1},
		Expected: map[string]int64{"allowed": 9, "jti_replay": 1, "passport_malformed": 0},
		CPU:      []CPUUsage{{Role: "verifier", PIDs: []int{7}, Seconds: 0.5, PerThousand: 50}},
	}
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"open loop at 100/s", "allowed                      9 (expected 9)",
		"errors      0 (transport 0", "verifier  0.50 s, 50.000 s per 1000 (pid 7)",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}
