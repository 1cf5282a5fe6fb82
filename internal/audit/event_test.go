package audit

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/reason"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file %s: %v (run with -update to create it)", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\ngot:  %s\nwant: %s", name, got, want)
	}
}

func sampleEvents() []Event {
	at := Timestamp(time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC))
	return []Event{{
		Version: Version, OccurredAt: at, Component: "verifier", Outcome: OutcomeAllow, Accepted: true,
		ReasonCode: reason.Allowed, EventID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", RequestID: "req-1",
		RouteID: "orders.create", Audience: "orders-api", Issuer: "https://issuer.example",
		Subject: "spiffe://example.local/workload/orders", JTI: "jti-1", KeyBinding: "software",
		RequiredKeyBinding: "software", TranscriptSHA256: strings.Repeat("ab", 32),
		PolicyID: strings.Repeat("cd", 32), PolicyVersion: 7,
		NodeID: "node-a:8081", Region: "eu-west", Method: "POST", Path: "/v1/orders", Status: 200,
		LatencyUS: 412, BundleSequence: 7, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
		NodeSeq: 1, PrevEventSHA256: zeroHash,
	}, {
		Version: Version, OccurredAt: at, Component: "verifier", Outcome: OutcomeDeny,
		ReasonCode: reason.PassportMissing, DetailReason: "no Authorization header \"quoted\" <tag>", DetailCode: reason.DetailBearerMissing,
		EventID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c", RequestID: "req-2", NodeID: "node-a:8081",
		Method: "GET", Path: "/v1/orders/ö", Status: 401, LatencyUS: 3, NodeSeq: 2,
		PrevEventSHA256: strings.Repeat("01", 32),
	}, {
		Version: Version, OccurredAt: at, Component: "verifier", Outcome: OutcomeBundle,
		ReasonCode: reason.BundleRejected, DetailReason: "policy bundle sequence 3 does not follow 7: rollback refused",
		EventID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5d", NodeID: "node-a:8081", BundleSequence: 3,
		BundleKind: "policy_bundle", BundleSHA256: strings.Repeat("ef", 32),
		PolicyID: strings.Repeat("cd", 32), PolicyVersion: 7, NodeSeq: 3, PrevEventSHA256: strings.Repeat("02", 32),
	}}
}

// TestEncodeGolden pins the message bytes: the chain hashes them, so a
// change here changes what every consumer verifies.
func TestEncodeGolden(t *testing.T) {
	var out []byte
	for _, e := range sampleEvents() {
		b, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		again, _ := e.Encode()
		if !bytes.Equal(b, again) {
			t.Errorf("Encode is not deterministic:\n%s\n%s", b, again)
		}
		d, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if rt, _ := d.Encode(); !bytes.Equal(rt, b) {
			t.Errorf("Decode+Encode = %s, want %s", rt, b)
		}
		out = append(append(out, b...), '\n')
	}
	golden(t, "events.golden.jsonl", out)
}

func TestSubject(t *testing.T) {
	for _, tt := range []struct {
		e    Event
		want string
	}{
		{Event{Outcome: OutcomeAllow, ReasonCode: reason.Allowed}, "trustplane.audit.allow.allowed"},
		{Event{Outcome: OutcomeDeny, ReasonCode: reason.JTIReplay}, "trustplane.audit.deny.jti_replay"},
		{Event{Outcome: OutcomeBundle, ReasonCode: reason.BundleApplied}, "trustplane.audit.bundle.bundle_applied"},
	} {
		if got := tt.e.NATSSubject(); got != tt.want {
			t.Errorf("NATSSubject(%s, %s) = %q, want %q", tt.e.Outcome, tt.e.ReasonCode, got, tt.want)
		}
		if err := tt.e.check(); err != nil {
			t.Errorf("check(%s) = %v", tt.want, err)
		}
	}
	if err := (&Event{Outcome: "maybe", ReasonCode: reason.Allowed}).check(); err == nil {
		t.Error("check accepted outcome \"maybe\"")
	}
}

func TestLongPathCut(t *testing.T) {
	e := Event{Outcome: OutcomeDeny, ReasonCode: reason.RequestPathNoncanonical, Path: "/" + strings.Repeat("a", 70000)}
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 4096 {
		t.Errorf("event with a 70 kB path encodes to %d bytes", len(b))
	}
}

// TestHeadPlusChain: encodeHead plus appendChain is byte for byte Encode,
// which the chain and every consumer rely on.
func TestHeadPlusChain(t *testing.T) {
	for i, e := range sampleEvents() {
		want, _ := e.Encode()
		head, err := e.encodeHead()
		if err != nil {
			t.Fatal(err)
		}
		if got := appendChain(head, e.NodeSeq, e.PrevEventSHA256); !bytes.Equal(got, want) {
			t.Errorf("event %d: head+chain\n%s\nwant\n%s", i, got, want)
		}
	}
}
