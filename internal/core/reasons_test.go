package core

import (
	"maps"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/reason"
	"github.com/tpcluster/tpcluster/internal/signer"
	"github.com/tpcluster/tpcluster/internal/transcript"
)

// otherIssuer is in the trust material (same key) but in no source, so a
// passport from it gets past step 8 and fails at step 12.
const otherIssuer = "https://other-issuer.example"

func trustWithOtherIssuer(pubB64 string) doc {
	tm := testTrust(pubB64)
	iss := tm["issuers"].([]any)
	other := doc{}
	maps.Copy(other, iss[0].(doc))
	other["issuer"] = otherIssuer
	tm["issuers"] = append(iss, other)
	return tm
}

func withSource(r doc, mutate func(s doc)) doc {
	s := source()
	mutate(s)
	r["allowed_sources"] = []any{s}
	return r
}

// reasonCase is one row of the reason table: a request shaped to fail at
// exactly one step.
type reasonCase struct {
	name     string
	want     reason.Code
	detail   reason.Detail // the detail code of a denial
	routes   []doc         // extra routes in the policy
	policy   func(p doc)   // policy edits
	view     time.Duration // how old the policy view is
	passport func(o *signer.PassportOptions)
	call     func(c *call)
	req      func(t testing.TB, r *Request)
	cfg      func(c *Config)
	ledger   error // every Consume returns it
	noSnap   bool
	twice    bool // send the same request twice; judge the second
	broker   bool // a broker key (brokerKID) signs the passport for the caller's key
}

func reasonCases() []reasonCase {
	return []reasonCase{
		{name: "allowed", want: reason.Allowed},
		{name: "path", want: reason.RequestPathNoncanonical, detail: reason.DetailPath, req: func(t testing.TB, r *Request) { r.RawPath = "/v1/../v1/orders" }},
		{name: "no passport", want: reason.PassportMissing, detail: reason.DetailBearerMissing, req: func(t testing.TB, r *Request) { delete(r.Header, "Authorization") }},
		{name: "basic auth", want: reason.PassportMissing, detail: reason.DetailBearerMissing, req: func(t testing.TB, r *Request) { r.Header["Authorization"] = []string{"Basic Zm9vOmJhcg=="} }},
		{name: "no bundle", want: reason.BundlePolicyMissing, detail: reason.DetailNoPair, noSnap: true},
		{name: "no route", want: reason.BundleRouteMissing, detail: reason.DetailNoRoute, req: func(t testing.TB, r *Request) { r.RawPath = "/v2/unknown" }},
		{name: "unknown freshness", want: reason.BundleFreshnessUnknown, detail: reason.DetailFreshnessClass,
			routes: []doc{func() doc { r := route("orders.x", "POST", "/v1/x"); r["freshness_class"] = "weekly"; return r }()},
			call:   func(c *call) { c.url, c.routeID = "https://orders.example/v1/x", "orders.x" }},
		{name: "stale realtime", want: reason.StaleBundleFailClosed, detail: reason.DetailViewAge, view: 6 * time.Second,
			routes: []doc{func() doc { r := route("orders.rt", "POST", "/v1/rt"); r["freshness_class"] = "realtime"; return r }()},
			call:   func(c *call) { c.url, c.routeID = "https://orders.example/v1/rt", "orders.rt" }},
		{name: "bounded without max", want: reason.StaleBundleFailClosed, detail: reason.DetailViewAge,
			routes: []doc{func() doc { r := route("orders.b", "POST", "/v1/b"); r["freshness_class"] = "bounded"; return r }()},
			call:   func(c *call) { c.url, c.routeID = "https://orders.example/v1/b", "orders.b" }},
		{name: "malformed passport", want: reason.PassportMalformed, detail: reason.DetailJWS, req: func(t testing.TB, r *Request) { r.Header["Authorization"] = []string{"Bearer not.a.jws"} }},
		{name: "two authorizations", want: reason.PassportMalformed, detail: reason.DetailAuthorizationRepeated, req: func(t testing.TB, r *Request) {
			r.Header["Authorization"] = append(r.Header["Authorization"], r.Header["Authorization"][0])
		}},
		{name: "unknown kid", want: reason.PassportKeyUnknown, detail: reason.DetailIssuerKey, passport: func(o *signer.PassportOptions) { o.KID = "proof-key-2" }},
		{name: "unknown issuer", want: reason.PassportKeyUnknown, detail: reason.DetailIssuerKey, passport: func(o *signer.PassportOptions) { o.Issuer = "https://nobody.example" }},
		{name: "bad passport signature", want: reason.PassportSignatureInvalid, detail: reason.DetailSignature, req: func(t testing.TB, r *Request) {
			// Another key mints the same claims under kid proof-key-1.
			other, err := signer.GenerateKey()
			if err != nil {
				t.Fatal(err)
			}
			tok, err := other.MintPassport(passportOptions())
			if err != nil {
				t.Fatal(err)
			}
			r.Header["Authorization"] = []string{"Bearer " + tok}
		}},
		{name: "expired", want: reason.PassportExpired, detail: reason.DetailExpired, passport: func(o *signer.PassportOptions) {
			o.IssuedAt, o.TTL = time.Unix(testNowUnix-400, 0), 300*time.Second
		}},
		{name: "not yet valid", want: reason.PassportNotYetValid, detail: reason.DetailNotYetValid, passport: func(o *signer.PassportOptions) {
			o.IssuedAt = time.Unix(testNowUnix+60, 0)
		}},
		{name: "lifetime", want: reason.PassportLifetimeExceeded, detail: reason.DetailLifetime, passport: func(o *signer.PassportOptions) { o.TTL = 901 * time.Second }},
		{name: "audience", want: reason.AudienceMismatch, detail: reason.DetailAudience, passport: func(o *signer.PassportOptions) { o.Audience = "billing-api" }},
		{name: "region bound elsewhere", want: reason.AudienceRegionMismatch, detail: reason.DetailRegion,
			cfg: func(c *Config) { c.Region = "eu" },
			policy: func(p doc) {
				p["audience_regions"] = doc{testAudience: doc{"home_region": "us", "mode": "region_bound"}}
			}},
		{name: "source issuer", want: reason.SourceIssuerMismatch, detail: reason.DetailIssuer, passport: func(o *signer.PassportOptions) { o.Issuer = otherIssuer }},
		{name: "source trust domain", want: reason.SourceTrustDomainMismatch, detail: reason.DetailTrustDomain, passport: func(o *signer.PassportOptions) { o.TrustDomain = "other.local" }},
		{name: "source subject", want: reason.SourceSubjectMismatch, detail: reason.DetailSubject, passport: func(o *signer.PassportOptions) { o.Subject = "spiffe://example.local/workload/billing" }},
		{name: "key binding", want: reason.InsufficientKeyBinding, detail: reason.DetailKeyBinding,
			routes: []doc{func() doc {
				r := route("orders.hw", "POST", "/v1/hw")
				r["required_key_binding"] = "hardware_local"
				return r
			}()},
			call: func(c *call) { c.url, c.routeID = "https://orders.example/v1/hw", "orders.hw" }},
		{name: "source key binding", want: reason.InsufficientKeyBinding, detail: reason.DetailKeyBinding,
			routes: []doc{withSource(route("orders.hw2", "POST", "/v1/hw2"), func(s doc) { s["required_key_binding"] = "remote_kms" })},
			call:   func(c *call) { c.url, c.routeID = "https://orders.example/v1/hw2", "orders.hw2" }},
		{name: "missing provenance", want: reason.MissingProvenance, detail: reason.DetailProvenance,
			routes: []doc{withSource(route("orders.p", "POST", "/v1/p"), func(s doc) {
				s["provenance_policy"] = doc{"required_posture": "spiffe_svid_verified"}
			})},
			call: func(c *call) { c.url, c.routeID = "https://orders.example/v1/p", "orders.p" }},
		{name: "provenance mismatch", want: reason.ProvenanceMismatch, detail: reason.DetailProvenance, broker: true,
			routes: []doc{withSource(route("orders.p", "POST", "/v1/p"), func(s doc) {
				s["provenance_policy"] = doc{"required_posture": "spiffe_svid_verified"}
			})},
			passport: func(o *signer.PassportOptions) { o.Provenance = &signer.Provenance{Posture: "unverified"} },
			call:     func(c *call) { c.url, c.routeID = "https://orders.example/v1/p", "orders.p" }},
		{name: "self-issued provenance", want: reason.MissingProvenance, detail: reason.DetailProvenance,
			routes: []doc{withSource(route("orders.p", "POST", "/v1/p"), func(s doc) {
				s["provenance_policy"] = doc{"required_posture": "spiffe_svid_verified"}
			})},
			passport: func(o *signer.PassportOptions) { o.Provenance = &signer.Provenance{Posture: "spiffe_svid_verified"} },
			call:     func(c *call) { c.url, c.routeID = "https://orders.example/v1/p", "orders.p" }},
		{name: "bundle provenance", want: reason.MissingProvenance, detail: reason.DetailProvenance,
			policy: func(p doc) { p["provenance_policy"] = doc{"profile": "trustplane-spiffe-spire-k8s-v1"} }},
		{name: "missing context", want: reason.MissingContext, detail: reason.DetailContext,
			routes: []doc{withSource(route("orders.c", "POST", "/v1/c"), func(s doc) {
				s["context_policy"] = doc{"required_tool_name": "orders-worker"}
			})},
			call: func(c *call) { c.url, c.routeID = "https://orders.example/v1/c", "orders.c" }},
		{name: "context mismatch", want: reason.ContextMismatch, detail: reason.DetailContext, broker: true,
			routes: []doc{withSource(route("orders.c", "POST", "/v1/c"), func(s doc) {
				s["context_policy"] = doc{"max_txn_value": "1000.00"}
			})},
			passport: func(o *signer.PassportOptions) { o.Ctx = &signer.Context{MaxTxnValue: "1000.01"} },
			call:     func(c *call) { c.url, c.routeID = "https://orders.example/v1/c", "orders.c" }},
		{name: "self-issued context", want: reason.MissingContext, detail: reason.DetailContext,
			routes: []doc{withSource(route("orders.c", "POST", "/v1/c"), func(s doc) {
				s["context_policy"] = doc{"max_txn_value": "1000.00"}
			})},
			passport: func(o *signer.PassportOptions) { o.Ctx = &signer.Context{MaxTxnValue: "10.00"} },
			call:     func(c *call) { c.url, c.routeID = "https://orders.example/v1/c", "orders.c" }},
		{name: "self-issued hardware claim", want: reason.InsufficientKeyBinding, detail: reason.DetailKeyBinding,
			routes: []doc{func() doc {
				r := route("orders.hw", "POST", "/v1/hw")
				r["required_key_binding"] = "hardware_local"
				return r
			}()},
			passport: func(o *signer.PassportOptions) { o.KeyBinding = "hardware_local" },
			call:     func(c *call) { c.url, c.routeID = "https://orders.example/v1/hw", "orders.hw" }},
		{name: "revoked jti", want: reason.PassportRevoked, detail: reason.DetailRevocation,
			policy: func(p doc) { p["revocations"] = []any{doc{"type": "jti", "value": "passport-v1-minimal-001"}} }},
		{name: "no proof", want: reason.InvalidRequestProof, detail: reason.DetailProofHeaders, req: func(t testing.TB, r *Request) { delete(r.Header, "X-Trustplane-Proof") }},
		{name: "no nonce", want: reason.InvalidRequestProof, detail: reason.DetailProofHeaders, req: func(t testing.TB, r *Request) { delete(r.Header, "X-Trustplane-Nonce") }},
		{name: "upper-case digest", want: reason.InvalidRequestProof, detail: reason.DetailProofHeaders, req: func(t testing.TB, r *Request) {
			r.Header["X-Trustplane-Body-Sha256"] = []string{"FE137DF4CB134851105A029132B24EFE021A81648FBC83CFC0D4AE8611821C13"}
		}},
		{name: "body too large", want: reason.RequestBodyTooLarge, detail: reason.DetailBodySize, req: func(t testing.TB, r *Request) { r.BodyTooLarge, r.Body = true, nil }},
		{name: "query leading question mark", want: reason.RequestPathNoncanonical, detail: reason.DetailQuery, req: func(t testing.TB, r *Request) { r.RawQuery = "?a=1" }},
		{name: "body hash", want: reason.RequestBindingMismatch, detail: reason.DetailBodyHash, req: func(t testing.TB, r *Request) { r.Body = []byte("not the signed body") }},
		{name: "binding", want: reason.RequestBindingMismatch, detail: reason.DetailTranscript, req: func(t testing.TB, r *Request) { r.RawQuery = "x=1" }},
		{name: "body the verifier did not see", want: reason.RequestBindingMismatch, detail: reason.DetailBodyUnseen, req: func(t testing.TB, r *Request) { r.BodyFromGateway = true }},
		{name: "uncovered override header", want: reason.RequestBindingMismatch, detail: reason.DetailOverrideHeader, req: func(t testing.TB, r *Request) {
			r.Header["X-Http-Method-Override"] = []string{"DELETE"}
			r.MustBeCovered = func(name string) bool { return strings.EqualFold(name, "X-HTTP-Method-Override") }
		}},
		{name: "covered override header", want: reason.Allowed,
			call: func(c *call) {
				c.headers = append(c.headers, transcript.Header{Name: "X-HTTP-Method-Override", Value: "DELETE"})
				if c.covered != nil {
					c.covered = append(c.covered, "x-http-method-override")
				}
			},
			req: func(t testing.TB, r *Request) {
				r.MustBeCovered = func(name string) bool { return strings.EqualFold(name, "X-HTTP-Method-Override") }
			}},
		{name: "proof", want: reason.InvalidRequestProof, detail: reason.DetailSignature, req: func(t testing.TB, r *Request) {
			// Well formed (step 16 passes), but not a signature of the digest.
			r.Header["X-Trustplane-Proof"] = []string{strings.Repeat("A", 86)}
		}},
		{name: "audit full", want: reason.AuditUnavailable, detail: reason.DetailSpoolFull, cfg: func(c *Config) { c.AuditRoom = func() bool { return false } }},
		{name: "replay", want: reason.JTIReplay, detail: reason.DetailJTIConsumed, twice: true},
		{name: "ledger down", want: reason.ReplayLedgerUnavailable, detail: reason.DetailLedger, ledger: ErrLedgerUnavailable},
		{name: "ledger broken contract", want: reason.ReplayLedgerUnavailable, detail: reason.DetailLedger, ledger: errBoom},
	}
}

// TestReasons produces every request reason code of SPEC §6 that the
// pipeline owns, each with its HTTP status. gateway_not_trusted belongs to
// check mode's adapter and is tested there.
func TestReasons(t *testing.T) {
	seen := make(map[reason.Code]bool)
	for _, tc := range reasonCases() {
		t.Run(tc.name, func(t *testing.T) {
			d, f := runCase(t, tc)
			if d.Reason != tc.want {
				t.Fatalf("Decide(%s) = %q (%v), want %q", tc.name, d.Reason, d.Err, tc.want)
			}
			want, _ := tc.want.Status()
			if d.Status != want {
				t.Errorf("Decide(%s) status = %d, want %d", tc.name, d.Status, want)
			}
			if (d.Outcome == Allow) != (tc.want == reason.Allowed) {
				t.Errorf("Decide(%s) outcome = %v", tc.name, d.Outcome)
			}
			if d.Detail != tc.detail {
				t.Errorf("Decide(%s) detail = %q (%v), want %q", tc.name, d.Detail, d.Err, tc.detail)
			}
			if d.Outcome == Deny && !d.Detail.Refines(d.Reason) {
				t.Errorf("Decide(%s): detail %q does not refine %s", tc.name, d.Detail, d.Reason)
			}
			// Order: nothing denied before step 19 may touch the ledger.
			calls := f.ledger.calls.Load()
			switch {
			case tc.want == reason.Allowed || tc.want == reason.ReplayLedgerUnavailable:
				if calls != 1 {
					t.Errorf("ledger calls = %d, want 1", calls)
				}
			case tc.want == reason.JTIReplay:
				if calls != 2 {
					t.Errorf("ledger calls = %d, want 2", calls)
				}
			case calls != 0:
				t.Errorf("ledger calls = %d for a denial at %s, want 0", calls, tc.want)
			}
			seen[tc.want] = true
		})
	}
	for _, c := range reason.RequestCodes() {
		// gateway_not_trusted and verifier_overloaded are the HTTP
		// adapter's, before the pipeline; backend_assertion_unavailable and
		// egress_token_unavailable are its too, after it. internal/proxy
		// tests them.
		if !seen[c] && c != reason.GatewayNotTrusted && c != reason.VerifierOverloaded && c != reason.BackendAssertionUnavailable && c != reason.EgressTokenUnavailable {
			t.Errorf("no case produces %q", c)
		}
	}
}

func runCase(t *testing.T, tc reasonCase) (Decision, *fixture) {
	t.Helper()
	f := newFixture(t, tc.cfg)
	pol := testPolicy(tc.routes...)
	if tc.policy != nil {
		tc.policy(pol)
	}
	tm := trustWithOtherIssuer(f.key.PublicKeyB64())
	c := derivedCall()
	if tc.broker {
		c.broker = brokerKey(t)
		tm = withKey(tm, brokerKID, c.broker.PublicKeyB64(), nil)
	}
	f.snap.Store(loadSnapshot(t, pol, tm, f.now.Add(-tc.view)))
	if tc.noSnap {
		f.snap.Store(nil)
	}
	f.ledger.err = tc.ledger
	if tc.call != nil {
		tc.call(&c)
	}
	po := passportOptions()
	if tc.passport != nil {
		tc.passport(&po)
	}
	c.passport = &po
	r := f.request(c)
	if tc.req != nil {
		tc.req(t, r)
	}
	d := f.p.Decide(t.Context(), r)
	if tc.twice {
		d = f.p.Decide(t.Context(), r)
	}
	return d, f
}

// TestPolicyBeforeReplay: a request that fails a policy check and would
// also be a replay reports the policy reason, and the ledger is not called.
func TestPolicyBeforeReplay(t *testing.T) {
	f := newFixture(t, nil)
	r := f.request(derivedCall())
	if d := f.p.Decide(t.Context(), r); d.Reason != reason.Allowed {
		t.Fatalf("first Decide = %q (%v)", d.Reason, d.Err)
	}
	pol := testPolicy()
	pol["revocations"] = []any{doc{"type": "subject", "value": testSubject}}
	f.snap.Store(loadSnapshot(t, pol, testTrust(f.key.PublicKeyB64()), f.now))
	if d := f.p.Decide(t.Context(), r); d.Reason != reason.PassportRevoked {
		t.Errorf("Decide(revoked replay) = %q, want passport_revoked", d.Reason)
	}
	if n := f.ledger.calls.Load(); n != 1 {
		t.Errorf("ledger calls = %d, want 1 (only the first request)", n)
	}
}

// TestRealClientShapes: requests shaped as real clients send them (SPEC §3.4)
// are allowed.
func TestRealClientShapes(t *testing.T) {
	body := []byte(`{"order_id":"ord_123","amount":"42.00"}`)
	h := func(kv ...string) []transcript.Header {
		var out []transcript.Header
		for i := 0; i < len(kv); i += 2 {
			out = append(out, transcript.Header{Name: kv[i], Value: kv[i+1]})
		}
		return out
	}
	urllib := h("Content-Type", "application/x-www-form-urlencoded", "User-Agent", "Python-urllib/3.11",
		"Accept-Encoding", "identity", "Connection", "close")
	tests := []struct {
		name string
		c    call
	}{
		{"python ProtectedClient POST, urllib adds Content-Type", call{method: "POST", url: "https://orders.example/v1/orders", body: body, extra: urllib}},
		{"python ProtectedClient POST with Idempotency-Key", call{method: "POST", url: "https://orders.example/v1/orders", body: body,
			headers: h("Content-Type", "application/json", "Idempotency-Key", "k-123"), extra: urllib[1:]}},
		{"python ProtectedClient POST gzip", call{method: "POST", url: "https://orders.example/v1/orders", body: []byte("\x1f\x8b\x08\x00gzipped"),
			headers: h("Content-Type", "application/json", "Content-Encoding", "gzip"), extra: urllib[1:]}},
		{"low-level signer leaves X-Ignore-Me uncovered", derivedCall()},
		{"node fetch GET", call{method: "GET", url: "https://orders.example/v1/orders/ord_123?expand=items&a=1", routeID: "orders.get",
			extra: h("accept", "*/*", "accept-language", "*", "sec-fetch-mode", "cors", "user-agent", "node", "accept-encoding", "gzip, deflate")}},
		{"proxy adds forwarding headers", call{method: "POST", url: "https://orders.example/v1/orders", body: body,
			headers: h("Content-Type", "application/json"),
			extra:   h("X-Forwarded-For", "10.0.0.1", "X-Real-Ip", "10.0.0.1", "Via", "1.1 edge", "Forwarded", "for=10.0.0.1")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			if d := f.p.Decide(t.Context(), f.request(tt.c)); d.Reason != reason.Allowed {
				t.Errorf("Decide(%s) = %q (%v), want allowed", tt.name, d.Reason, d.Err)
			}
		})
	}
}

func TestReplayTTL(t *testing.T) {
	now := time.Unix(1000, 0)
	tests := []struct {
		exp  time.Time
		want time.Duration
	}{
		{time.Unix(1100, 0), 130 * time.Second},
		{time.Unix(1100, 0).Add(-time.Millisecond), 130 * time.Second},
		{time.Unix(900, 0), time.Second},
		{time.Unix(970, 0).Add(500 * time.Millisecond), time.Second},
		{time.Unix(1<<62, 0), time.Duration(math.MaxInt64)}, // saturated, not overflowed
	}
	for _, tt := range tests {
		if got := ReplayTTL(tt.exp, 30*time.Second, now); got != tt.want {
			t.Errorf("ReplayTTL(%v) = %v, want %v", tt.exp.Unix(), got, tt.want)
		}
	}
}

func TestNewLedgerKey(t *testing.T) {
	// sha256("https://issuer.example\x00passport-v1-minimal-001"), computed
	// independently with sha256sum.
	const want = "d2b52fd766e86b831b955b651f37b486c3576ea71ee3ccefc1b56464d573de68"
	if got := NewLedgerKey(testIssuer, "passport-v1-minimal-001"); string(got) != want {
		t.Errorf("NewLedgerKey = %s, want %s", got, want)
	}
}

// TestTargetAmbiguities: the step 1 and step 17 refusals that keep the
// verifier and an upstream reading the same request (security review).
func TestTargetAmbiguities(t *testing.T) {
	tests := []struct {
		name string
		edit func(r *Request)
		want reason.Code
	}{
		{"hash in path", func(r *Request) { r.RawPath = "/v1/orders#x" }, reason.RequestPathNoncanonical},
		{"hash in query", func(r *Request) { r.RawQuery = "a=1#&admin=1" }, reason.RequestPathNoncanonical},
		{"leading question mark", func(r *Request) { r.RawQuery = "?a=1" }, reason.RequestPathNoncanonical},
		{"dot segments behind path parameters", func(r *Request) { r.RawPath = "/v1/files/..;/..;/admin/purge" }, reason.RequestPathNoncanonical},
		{"encoded path parameter", func(r *Request) { r.RawPath = "/v1/orders/..%3B/orders" }, reason.RequestPathNoncanonical},
		{"covered header twice", func(r *Request) {
			r.Header["Content-Type"] = append(r.Header["Content-Type"], "text/plain")
		}, reason.RequestBindingMismatch},
		{"covered header under two spellings", func(r *Request) {
			r.Header["content-type"] = []string{"text/plain"}
		}, reason.RequestBindingMismatch},
		{"uncovered header twice is fine", func(r *Request) {
			r.Header["X-Ignore-Me"] = []string{"a", "b"}
		}, reason.Allowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			r := f.request(derivedCall())
			tt.edit(r)
			if d := f.p.Decide(t.Context(), r); d.Reason != tt.want {
				t.Errorf("Decide(%s) = %q (%v), want %q", tt.name, d.Reason, d.Err, tt.want)
			}
		})
	}
}
