package backendjwt_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/backendjwt"
	"github.com/tpcluster/tpcluster/internal/assertion"
	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
)

const issuer = "https://verifiers.example"

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// world is a minter and the JWKS server an upstream fetches from.
type world struct {
	key     *keyfile.PrivateKey
	minter  *assertion.Minter
	clock   *clock
	srv     *httptest.Server
	down    atomic.Bool  // the JWKS server answers 503
	fetches atomic.Int32 // JWKS requests served
}

func newWorld(t *testing.T) *world {
	t.Helper()
	key, err := keyfile.Generate("node-1")
	if err != nil {
		t.Fatal(err)
	}
	w := &world{key: key, clock: &clock{t: time.Unix(1_800_000_000, 0)}}
	if w.minter, err = assertion.New(assertion.Config{Issuer: issuer, Key: key, Now: w.clock.Now}); err != nil {
		t.Fatal(err)
	}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.fetches.Add(1)
		if w.down.Load() {
			http.Error(rw, "down", http.StatusServiceUnavailable)
			return
		}
		rw.Header().Set("Cache-Control", "max-age=60")
		rw.Write(w.minter.JWKSDocument())
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *world) verifier(t *testing.T, aud string) *backendjwt.Verifier {
	t.Helper()
	v, err := backendjwt.New(backendjwt.Config{JWKSURL: w.srv.URL, Issuer: issuer, Audience: aud, Now: w.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (w *world) mint(t *testing.T, aud string, ttl time.Duration, target string) assertion.Minted {
	t.Helper()
	m, err := w.minter.Mint(&assertion.Request{
		Spec: &bundle.BackendAssertion{Audience: aud, TTL: ttl}, Subject: "spiffe://d/w", PassportJTI: "p-1",
		RouteID: "orders.get", Method: "GET", Target: target, TranscriptSHA256: strings.Repeat("ab", 32),
		KeyBinding: "software", TrustDomain: "d", EventID: "e-1", RequestID: "r-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMintVerifies(t *testing.T) {
	w := newWorld(t)
	v := w.verifier(t, "orders-backend")
	m := w.mint(t, "orders-backend", 30*time.Second, "/v1/orders/1?x=2")
	c, err := v.Verify(t.Context(), m.Token)
	if err != nil {
		t.Fatal(err)
	}
	want := backendjwt.Claims{Issuer: issuer, Subject: "spiffe://d/w", Audience: "orders-backend",
		IssuedAt: 1_800_000_000, NotBefore: 1_800_000_000, ExpiresAt: 1_800_000_030, ID: m.JTI,
		PassportJTI: "p-1", RouteID: "orders.get", Method: "GET", Target: "/v1/orders/1?x=2",
		TranscriptSHA256: strings.Repeat("ab", 32), KeyBinding: "software", TrustDomain: "d", EventID: "e-1", RequestID: "r-1"}
	if *c != want {
		t.Errorf("claims\n got %+v\nwant %+v", *c, want)
	}
	if m.KID != "node-1" || len(m.JTI) < 20 {
		t.Errorf("kid %q jti %q", m.KID, m.JTI)
	}
	if m2 := w.mint(t, "orders-backend", 30*time.Second, "/v1/orders/1?x=2"); m2.JTI == m.JTI || m2.Token == m.Token {
		t.Error("two mints for the same request share a jti or token")
	}
}

func TestVerifyRefuses(t *testing.T) {
	w := newWorld(t)
	v := w.verifier(t, "orders-backend")
	good := w.mint(t, "orders-backend", 30*time.Second, "/v1/orders/1").Token
	parts := strings.Split(good, ".")
	other, _ := keyfile.Generate("node-1") // same kid, another key: a forgery
	forger, _ := assertion.New(assertion.Config{Issuer: issuer, Key: other, Now: w.clock.Now})
	forged, _ := forger.Mint(&assertion.Request{Spec: &bundle.BackendAssertion{Audience: "orders-backend", TTL: time.Minute}})
	otherIss, _ := assertion.New(assertion.Config{Issuer: "https://elsewhere", Key: w.key, Now: w.clock.Now})
	wrongIss, _ := otherIss.Mint(&assertion.Request{Spec: &bundle.BackendAssertion{Audience: "orders-backend", TTL: time.Minute}})
	for name, tok := range map[string]string{
		"another audience":    w.mint(t, "billing-backend", 30*time.Second, "/x").Token,
		"another issuer":      wrongIss.Token,
		"forged signature":    forged.Token,
		"payload swapped":     parts[0] + "." + strings.Split(w.mint(t, "orders-backend", 60*time.Second, "/y").Token, ".")[1] + "." + parts[2],
		"not a JWS":           "garbage",
		"unsigned (alg none)": "eyJhbGciOiJub25lIn0." + parts[1] + ".",
	} {
		if _, err := v.Verify(t.Context(), tok); !errors.Is(err, backendjwt.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := v.Verify(t.Context(), ""); !errors.Is(err, backendjwt.ErrMissing) {
		t.Errorf("empty: %v", err)
	}

	// Expiry with the default 5 s skew.
	w.clock.Add(34 * time.Second)
	if _, err := v.Verify(t.Context(), good); err != nil {
		t.Errorf("4 s past exp (within skew): %v", err)
	}
	w.clock.Add(2 * time.Second)
	if _, err := v.Verify(t.Context(), good); !errors.Is(err, backendjwt.ErrInvalid) {
		t.Errorf("6 s past exp: err = %v, want ErrInvalid", err)
	}
	// Not yet valid: minted 10 s in the verifier's future.
	future := &clock{t: w.clock.Now().Add(10 * time.Second)}
	fm, _ := assertion.New(assertion.Config{Issuer: issuer, Key: w.key, Now: future.Now})
	ft, _ := fm.Mint(&assertion.Request{Spec: &bundle.BackendAssertion{Audience: "orders-backend", TTL: time.Minute}})
	if _, err := v.Verify(t.Context(), ft.Token); !errors.Is(err, backendjwt.ErrInvalid) || !strings.Contains(err.Error(), "not valid before") {
		t.Errorf("nbf 10 s ahead: err = %v", err)
	}
}

func TestVerifyRequest(t *testing.T) {
	w := newWorld(t)
	v := w.verifier(t, "orders-backend")
	tok := w.mint(t, "orders-backend", 30*time.Second, "/v1/orders/1?a=1").Token
	req := func(method, target string, vals ...string) *http.Request {
		r := httptest.NewRequest(method, target, nil)
		for _, x := range vals {
			r.Header.Add(backendjwt.Header, x)
		}
		return r
	}
	if _, err := v.VerifyRequest(req("GET", "/v1/orders/1?a=1", tok), backendjwt.RequestOptions{}); err != nil {
		t.Fatalf("matching request: %v", err)
	}
	for name, r := range map[string]*http.Request{
		"another target": req("GET", "/v1/orders/2?a=1", tok),
		"another query":  req("GET", "/v1/orders/1?a=2", tok),
		"another method": req("DELETE", "/v1/orders/1?a=1", tok),
		"two headers":    req("GET", "/v1/orders/1?a=1", tok, tok),
	} {
		if _, err := v.VerifyRequest(r, backendjwt.RequestOptions{}); !errors.Is(err, backendjwt.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	withDigest := req("GET", "/v1/orders/1?a=1", tok)
	if _, err := v.VerifyRequest(withDigest, backendjwt.RequestOptions{Transcript: true}); !errors.Is(err, backendjwt.ErrInvalid) {
		t.Errorf("transcript asked, no digest header: err = %v", err)
	}
	withDigest.Header.Set("X-TrustPlane-Transcript-Sha256", strings.Repeat("ab", 32))
	if _, err := v.VerifyRequest(withDigest, backendjwt.RequestOptions{Transcript: true}); err != nil {
		t.Errorf("transcript matches: %v", err)
	}

	// Middleware: 401 without, the claims in the context with.
	h := v.Middleware(backendjwt.RequestOptions{}, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		c, ok := backendjwt.FromContext(r.Context())
		if !ok {
			t.Error("no claims in the context")
			return
		}
		rw.Write([]byte(c.RouteID))
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req("GET", "/v1/orders/1?a=1"))
	if rec.Code != 401 || !strings.Contains(rec.Body.String(), "backend_assertion_invalid") {
		t.Errorf("middleware without assertion = %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req("GET", "/v1/orders/1?a=1", tok))
	if rec.Code != 200 || rec.Body.String() != "orders.get" {
		t.Errorf("middleware with assertion = %d %s", rec.Code, rec.Body)
	}
}

// TestJWKSCache: the set is fetched once and reused; a failed refresh keeps
// the last good set until its max age (60 s from the server's
// Cache-Control), then verification fails closed with ErrNoKeys; the
// server's return brings it back.
func TestJWKSCache(t *testing.T) {
	w := newWorld(t)
	v := w.verifier(t, "orders-backend")
	verify := func() error {
		_, err := v.Verify(t.Context(), w.mint(t, "orders-backend", 30*time.Second, "/").Token)
		return err
	}
	for range 5 {
		if err := verify(); err != nil {
			t.Fatal(err)
		}
	}
	if n := w.fetches.Load(); n != 1 {
		t.Errorf("5 verifications fetched the JWKS %d times, want 1", n)
	}
	w.down.Store(true)
	w.clock.Add(45 * time.Second) // past the refresh point (max age / 2)
	if err := verify(); err != nil {
		t.Errorf("JWKS down, set 45 s old: %v (the last good set must serve)", err)
	}
	if n := w.fetches.Load(); n != 2 {
		t.Errorf("fetches = %d, want a refresh attempt (2)", n)
	}
	w.clock.Add(16 * time.Second)
	if err := verify(); !errors.Is(err, backendjwt.ErrNoKeys) {
		t.Errorf("JWKS down, set 61 s old: err = %v, want ErrNoKeys", err)
	}
	w.down.Store(false)
	if err := verify(); err != nil {
		t.Errorf("JWKS back: %v", err)
	}
}

// TestUnknownKIDRefetch: a key that appears in the JWKS after the cache was
// filled (a node added, a next key) is found by a refetch; unknown kids do
// not refetch more than once per 5 s.
func TestUnknownKIDRefetch(t *testing.T) {
	w := newWorld(t)
	v := w.verifier(t, "orders-backend")
	if _, err := v.Verify(t.Context(), w.mint(t, "orders-backend", 30*time.Second, "/").Token); err != nil {
		t.Fatal(err)
	}
	k2, _ := keyfile.Generate("node-2")
	m2, err := assertion.New(assertion.Config{Issuer: issuer, Key: k2, Now: w.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	tok2, _ := m2.Mint(&assertion.Request{Spec: &bundle.BackendAssertion{Audience: "orders-backend", TTL: 30 * time.Second}})
	// Not yet published: refused, and a second try within 5 s does not fetch.
	if _, err := v.Verify(t.Context(), tok2.Token); !errors.Is(err, backendjwt.ErrInvalid) {
		t.Fatalf("unpublished kid: %v", err)
	}
	before := w.fetches.Load()
	v.Verify(t.Context(), tok2.Token)
	if n := w.fetches.Load(); n != before {
		t.Errorf("a second unknown kid within 5 s fetched again (%d -> %d)", before, n)
	}
	// Published (the fleet now lists node-2), and 5 s later: found.
	if w.minter, err = assertion.New(assertion.Config{Issuer: issuer, Key: w.key, FleetKeys: []*keyfile.PublicKey{k2.Public()}, Now: w.clock.Now}); err != nil {
		t.Fatal(err)
	}
	w.clock.Add(5 * time.Second)
	if _, err := v.Verify(t.Context(), tok2.Token); err != nil {
		t.Errorf("published kid: %v", err)
	}
}
