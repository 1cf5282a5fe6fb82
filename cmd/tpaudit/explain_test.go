package main

import (
	"strings"
	"testing"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/reason"
)

// explainEvents: an allow, a body-hash denial and a bundle event.
func explainEvents() []*audit.Event {
	cached := true
	return []*audit.Event{
		{Component: "verifier", Outcome: audit.OutcomeAllow, Accepted: true, ReasonCode: reason.Allowed, Status: 200,
			RequestID: "req-allow", RouteID: "orders.create", Issuer: "https://issuer.example", Subject: "spiffe://x/orders",
			KeyBinding: "software", RequiredKeyBinding: "software", PolicyID: "cdcd", PolicyVersion: 7, Method: "POST", Path: "/v1/orders",
			AssertionJTI: "as-1", AssertionKID: "node-a-2026", EgressProvider: "saas", EgressGrant: "client_credentials",
			EgressScopes: "orders.read orders.write", EgressAudience: "https://api.saas.example", EgressTokenLifetimeS: 300,
			EgressFromCache: &cached, EgressTokenSHA256: "abab"},
		{Component: "verifier", Outcome: audit.OutcomeDeny, ReasonCode: reason.RequestBindingMismatch, Status: 401,
			DetailCode: reason.DetailBodyHash, DetailReason: "body hash differs from X-TrustPlane-Body-SHA256",
			RequestID: "req-deny", RouteID: "orders.create", Issuer: "https://issuer.example", Subject: "spiffe://x/orders",
			PolicyID: "cdcd", PolicyVersion: 7, Method: "POST", Path: "/v1/orders"},
		{Component: "verifier", Outcome: audit.OutcomeBundle, Accepted: true, ReasonCode: reason.BundleApplied,
			BundleKind: "policy_bundle", BundleSequence: 7, BundleSHA256: "cdcd", PolicyID: "cdcd", PolicyVersion: 7},
	}
}

// TestExplain: explain finds a request's event in the stream of a real
// NATS server and says why it was denied, in words and by detail code;
// an unknown id exits 1 naming it.
func TestExplain(t *testing.T) {
	srv := natstest.Server(t)
	publish(t, natstest.Connect(t, srv.ClientURL()), "node-a", explainEvents()...)
	url := srv.ClientURL()

	code, out := tpaudit(t, url, "explain", "req-deny")
	t.Logf("explain req-deny:\n%s", out)
	for _, want := range []string{
		"request req-deny was denied: 401 request_binding_mismatch",
		"the body's SHA-256 differs from X-TrustPlane-Body-SHA256 (detail_code body_hash)",
		"error:      body hash differs",
		"POST /v1/orders, route orders.create",
		"sequence 7",
		"node node-a",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("explain req-deny = %d, want %q in\n%s", code, want, out)
		}
	}
	code, out = tpaudit(t, url, "explain", "req-allow")
	if code != 0 || !strings.Contains(out, "was accepted: 200 allowed") || strings.Contains(out, "why:") {
		t.Errorf("explain req-allow = %d\n%s", code, out)
	}
	// The tiers' fields: which assertion and which OAuth request the
	// decision produced (docs/BACKEND-JWT.md, docs/OAUTH-EGRESS.md).
	for _, want := range []string{
		"backend assertion jti as-1, signed with key node-a-2026",
		"provider saas, grant client_credentials",
		`scope "orders.read orders.write", audience https://api.saas.example, lifetime 300 s, from the cache (sha256 abab)`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain req-allow: want %q in\n%s", want, out)
		}
	}
	if _, out := tpaudit(t, url, "explain", "req-deny"); strings.Contains(out, "assertion:") || strings.Contains(out, "egress:") {
		t.Errorf("explain req-deny names an assertion or egress it has not:\n%s", out)
	}
	code, out = tpaudit(t, url, "explain", "req-nobody")
	if code != exitNotFound || !strings.Contains(out, `no event with request_id "req-nobody" among 3 events`) {
		t.Errorf("explain of an unknown id = %d, want %d naming it\n%s", code, exitNotFound, out)
	}
	for _, args := range [][]string{{"explain"}, {"explain", "a", "b"}, {"explain", "--since", "yesterday", "req-deny"}} {
		if code, out := tpaudit(t, url, args...); code != exitUsage {
			t.Errorf("tpaudit %q = %d, want %d\n%s", args, code, exitUsage, out)
		}
	}
}

// TestTailText: --text prints the detail code and reason of a denial and
// the document of a bundle event, and no empty "key=" members.
func TestTailText(t *testing.T) {
	srv := natstest.Server(t)
	publish(t, natstest.Connect(t, srv.ClientURL()), "node-a", explainEvents()...)
	code, out := tpaudit(t, srv.ClientURL(), "tail", "--since", "1h", "--follow=false", "--text")
	t.Logf("tail --text:\n%s", out)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != 3 {
		t.Fatalf("tail --text = %d, %d lines, want 0 and 3\n%s", code, len(lines), out)
	}
	for i, want := range []string{
		"allow allowed status=200 route=orders.create sub=spiffe://x/orders request_id=req-allow",
		`deny request_binding_mismatch detail=body_hash status=401 route=orders.create sub=spiffe://x/orders request_id=req-deny why="body hash differs from X-TrustPlane-Body-SHA256"`,
		"bundle bundle_applied kind=policy_bundle seq=7 sha256=cdcd policy_seq=7",
	} {
		if !strings.HasSuffix(lines[i], want) {
			t.Errorf("line %d = %q, want it to end %q", i, lines[i], want)
		}
		if strings.Contains(lines[i], "= ") || strings.HasSuffix(lines[i], "=") {
			t.Errorf("line %d has an empty member: %q", i, lines[i])
		}
	}
}

// TestTailRefusesUnknownFilters: a filter value that can match nothing
// exits 2 naming flag, variable and value, every problem at once, before
// connecting (the URL here has no server).
func TestTailRefusesUnknownFilters(t *testing.T) {
	code, out := tpaudit(t, "nats://127.0.0.1:1", "tail", "--outcome", "denied", "--reason", "body_hash", "--since", "soon")
	for _, want := range []string{
		`--outcome="denied" (TPCLUSTER_OUTCOME): want allow, deny or bundle`,
		`--reason="body_hash" (TPCLUSTER_REASON): not a reason code`,
		`--since "soon"`,
	} {
		if code != exitUsage || !strings.Contains(out, want) {
			t.Errorf("tail with bad filters = %d, want %d and %q\n%s", code, exitUsage, want, out)
		}
	}
	if strings.Contains(out, "connect") {
		t.Errorf("tail connected before judging its flags:\n%s", out)
	}
}
