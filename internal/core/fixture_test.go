package core

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/signer"
	"github.com/tpcluster/tpcluster/internal/transcript"
)

// The DERIVED vector's world (SPEC opening section): issuer, kid, trust
// domain, route, audience, subject and clock.
const (
	testIssuer   = "https://issuer.example"
	testKID      = "proof-key-1"
	testDomain   = "example.local"
	testAudience = "orders-api"
	testSubject  = "spiffe://example.local/workload/orders"
	testNowUnix  = 1740000100
)

// memLedger is the in-memory ledger for core unit tests only (real ledgers
// are tested against a real NATS server). It counts calls so order tests can
// prove that no denied request touched it.
type memLedger struct {
	mu    sync.Mutex
	keys  map[LedgerKey]time.Duration
	calls atomic.Int64
	err   error // when set, every Consume returns it
}

func newMemLedger() *memLedger { return &memLedger{keys: make(map[LedgerKey]time.Duration)} }

func (l *memLedger) Consume(_ context.Context, key LedgerKey, ttl time.Duration, _ LedgerEntry) error {
	l.calls.Add(1)
	if l.err != nil {
		return l.err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.keys[key]; ok {
		return ErrReplay
	}
	l.keys[key] = ttl
	return nil
}

// seedKey is the DERIVED vector's caller key: seed bytes 0x00..0x1f.
func seedKey(t testing.TB) *signer.Key {
	t.Helper()
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i)
	}
	k, err := signer.NewKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// brokerKID names the broker key in the trust material of broker tests: a
// key that signs passports for the caller's cnf key (SPEC §2.1).
const brokerKID = "broker-key-1"

// brokerKey is a broker's key: seed bytes 0x40..0x5f.
func brokerKey(t testing.TB) *signer.Key {
	t.Helper()
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = 0x40 + byte(i)
	}
	k, err := signer.NewKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// withKey adds a key entry for pubB64 under kid to the first issuer of tm,
// edited by entry (key_binding, max_key_binding) when non-nil.
func withKey(tm doc, kid, pubB64 string, entry func(k doc)) doc {
	is := tm["issuers"].([]any)[0].(doc)
	k := doc{"kid": kid, "alg": "EdDSA", "public_key_b64url": pubB64, "status": "active"}
	if entry != nil {
		entry(k)
	}
	is["keys"] = append(is["keys"].([]any), k)
	return tm
}

// doc is a JSON document under construction.
type doc = map[string]any

func source() doc {
	return doc{
		"source_type":          "software_jwks",
		"issuer":               testIssuer,
		"trust_domain":         testDomain,
		"subject_exact":        testSubject,
		"required_key_binding": "software",
	}
}

func route(id, method, tmpl string) doc {
	return doc{
		"route_id":        id,
		"method":          method,
		"path_template":   tmpl,
		"freshness_class": "offline-ok",
		"allowed_sources": []any{source()},
	}
}

// testPolicy is the DERIVED vector's policy: orders.create = POST /v1/orders,
// plus a GET route and a second POST route whose sources also admit the
// passport (for the route tamper).
func testPolicy(routes ...doc) doc {
	rs := []any{
		route("orders.create", "POST", "/v1/orders"),
		route("orders.get", "GET", "/v1/orders/{id}"),
		route("orders.import", "POST", "/v1/orders/import"),
	}
	for _, r := range routes {
		rs = append(rs, r)
	}
	return doc{
		"version":      "trustplane-bundle-v1",
		"kind":         "policy_runtime_bundle",
		"trust_domain": testDomain,
		"apis": []any{doc{
			"api_id": "orders-api", "audience": testAudience, "base_url": "https://orders.example",
		}},
		"route_groups": []any{doc{
			"route_group_id": "orders", "api_id": "orders-api", "routes": rs,
		}},
		"default_required_key_binding": "software",
		"default_freshness_class":      "offline-ok",
	}
}

func testTrust(pubB64 string) doc {
	return doc{
		"version": "trustplane-trust-material-v1",
		"kind":    "trust_material",
		"issuers": []any{doc{
			"issuer":       testIssuer,
			"trust_domain": testDomain,
			"source_type":  "software_jwks",
			"keys": []any{doc{
				"kid": testKID, "alg": "EdDSA", "public_key_b64url": pubB64, "status": "active",
			}},
		}},
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loadSnapshot parses policy and trust as unsigned development documents.
func loadSnapshot(t testing.TB, policy, trust doc, view time.Time) *Snapshot {
	t.Helper()
	opts := bundle.Options{AllowUnsigned: true, ModTime: view}
	pol, err := bundle.ParsePolicy(mustJSON(t, policy), opts)
	if err != nil {
		t.Fatalf("ParsePolicy: %v", err)
	}
	tm, err := bundle.ParseTrustMaterial(mustJSON(t, trust), opts)
	if err != nil {
		t.Fatalf("ParseTrustMaterial: %v", err)
	}
	return &Snapshot{Policy: pol, Trust: tm, ViewTime: view}
}

// fixture is a pipeline over the DERIVED world with an in-memory ledger.
type fixture struct {
	t      testing.TB
	key    *signer.Key
	ledger *memLedger
	now    time.Time
	snap   atomic.Pointer[Snapshot]
	cfg    Config
	p      *Pipeline
}

func newFixture(t testing.TB, mutate func(*Config)) *fixture {
	t.Helper()
	f := &fixture{t: t, key: seedKey(t), ledger: newMemLedger(), now: time.Unix(testNowUnix, 0)}
	f.snap.Store(loadSnapshot(t, testPolicy(), testTrust(f.key.PublicKeyB64()), f.now))
	f.cfg = Config{
		Ledger:   f.ledger,
		Snapshot: f.snap.Load,
		Now:      func() time.Time { return f.now },
	}
	if mutate != nil {
		mutate(&f.cfg)
	}
	p, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.p = p
	return f
}

// passportOptions are the DERIVED vector's claims.
func passportOptions() signer.PassportOptions {
	return signer.PassportOptions{
		Issuer:      testIssuer,
		Subject:     testSubject,
		Audience:    testAudience,
		TrustDomain: testDomain,
		KID:         testKID,
		IssuedAt:    time.Unix(1740000000, 0),
		TTL:         300 * time.Second,
		JTI:         "passport-v1-minimal-001",
	}
}

// call describes one request to sign and send.
type call struct {
	method, url string
	body        []byte
	headers     []transcript.Header // caller headers, covered unless listed in extra
	extra       []transcript.Header // added after signing, not covered (client libraries, proxies)
	covered     []string            // nil: every caller header plus the nonce
	routeID     string              // the route the caller signs for
	nonce       string
	passport    *signer.PassportOptions
	// broker, if set, signs the passport for the fixture's key (kid
	// brokerKID), which still signs the request; else it is self-issued.
	broker *signer.Key
}

// request signs c and returns the request as the verifier would receive it.
func (f *fixture) request(c call) *Request {
	f.t.Helper()
	po := passportOptions()
	if c.passport != nil {
		po = *c.passport
	}
	minter := f.key
	if c.broker != nil {
		minter, po.KID, po.Cnf = c.broker, brokerKID, f.key.PublicKeyB64()
	}
	tok, err := minter.MintPassport(po)
	if err != nil {
		f.t.Fatalf("MintPassport: %v", err)
	}
	return f.requestWith(tok, c)
}

func (f *fixture) requestWith(tok string, c call) *Request {
	f.t.Helper()
	u, err := url.Parse(c.url)
	if err != nil {
		f.t.Fatal(err)
	}
	if c.routeID == "" {
		c.routeID = "orders.create"
	}
	sr := &signer.Request{
		Method: c.method, Scheme: u.Scheme, Authority: u.Host, Path: u.EscapedPath(), RawQuery: u.RawQuery,
		Body: c.body, Headers: c.headers, Covered: c.covered, RouteID: c.routeID, Nonce: c.nonce,
	}
	signed, err := f.key.Sign(tok, sr)
	if err != nil {
		f.t.Fatalf("Sign: %v", err)
	}
	h := make(map[string][]string)
	add := func(hs []transcript.Header) {
		for _, x := range hs {
			k := canonicalKey(x.Name)
			h[k] = append(h[k], x.Value)
		}
	}
	add(c.headers)
	add(signed.Headers)
	add(c.extra)
	return &Request{
		Method: c.method, Scheme: u.Scheme, Authority: u.Host, RawPath: u.EscapedPath(), RawQuery: u.RawQuery,
		Header: h, Body: c.body,
	}
}

// canonicalKey is net/http's CanonicalMIMEHeaderKey for the names tests use,
// without importing net/http into core's tests.
func canonicalKey(s string) string {
	b := []byte(s)
	upper := true
	for i, c := range b {
		if upper && 'a' <= c && c <= 'z' {
			b[i] = c - 32
		} else if !upper && 'A' <= c && c <= 'Z' {
			b[i] = c + 32
		}
		upper = c == '-'
	}
	return string(b)
}

// derivedCall is the DERIVED vector's request.
func derivedCall() call {
	return call{
		method:  "POST",
		url:     "https://orders.example/v1/orders",
		body:    []byte(`{"order_id":"ord_123","amount":"42.00"}`),
		headers: []transcript.Header{{Name: "Content-Type", Value: "application/json"}},
		extra:   []transcript.Header{{Name: "X-Ignore-Me", Value: "not-covered"}},
		covered: []string{"content-type", "x-trustplane-nonce"},
		nonce:   "nonce-v1-001",
	}
}

var errBoom = errors.New("boom")
