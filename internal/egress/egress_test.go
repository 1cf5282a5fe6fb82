package egress_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/egress"
	"github.com/tpcluster/tpcluster/internal/egress/oauthtest"
	"github.com/tpcluster/tpcluster/internal/signerclass"
)

// world is one authorization server with a basic, a post and a
// private_key_jwt client, and the node's credentials for each.
type world struct {
	op    *oauthtest.Server
	creds map[string]egress.Credential
	prov  map[string]*bundle.EgressProvider
	subj  ed25519.PrivateKey // signs the test's subject tokens
}

var scopes = []string{"contacts.read", "contacts.list", "contacts.write"}

func newWorld(t *testing.T) *world {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyCred, err := egress.KeyCredential(ec)
	if err != nil {
		t.Fatal(err)
	}
	pub, subj, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{subj: subj}
	w.op = oauthtest.Start(t, oauthtest.Config{
		Clients: []oauthtest.Client{
			{ID: "basic-client", Secret: "s3cret:basic", Scopes: scopes},
			{ID: "post-client", Secret: "s3cret+post", PostOnly: true, Scopes: scopes},
			{ID: "jwt-client", Key: &ec.PublicKey, KID: keyCred.KID(), Scopes: scopes},
		},
		VerifySubjectToken: func(_ context.Context, token string) (string, error) {
			tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.EdDSA})
			if err != nil {
				return "", err
			}
			var c jwt.Claims
			if err := tok.Claims(pub, &c); err != nil {
				return "", err
			}
			return c.Subject, nil
		},
	})
	basic, _ := egress.SecretCredential("s3cret:basic")
	post, _ := egress.SecretCredential("s3cret+post")
	w.creds = map[string]egress.Credential{"basic": basic, "post": post, "jwt": keyCred}
	w.prov = map[string]*bundle.EgressProvider{
		"basic": {ID: "basic", TokenEndpoint: w.op.TokenEndpoint, ClientID: "basic-client", ClientAuth: bundle.ClientSecretBasic},
		"post":  {ID: "post", TokenEndpoint: w.op.TokenEndpoint, ClientID: "post-client", ClientAuth: bundle.ClientSecretPost},
		"jwt":   {ID: "jwt", TokenEndpoint: w.op.TokenEndpoint, ClientID: "jwt-client", ClientAuth: bundle.PrivateKeyJWT, Issuer: w.op.Issuer},
	}
	return w
}

func (w *world) client(t *testing.T, now func() time.Time) *egress.Client {
	t.Helper()
	c, err := egress.New(egress.Config{Credentials: w.creds, Timeout: 2 * time.Second, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// subjectToken is a signed JWT for sub, standing in for a backend assertion.
func (w *world) subjectToken(t *testing.T, sub string) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: w.subj}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(jwt.Claims{Subject: sub, Expiry: jwt.NewNumericDate(time.Now().Add(time.Minute))}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func spec(p *bundle.EgressProvider, grant bundle.Grant, mod func(e *bundle.Egress)) *bundle.Egress {
	e := &bundle.Egress{Provider: p, Grant: grant, Scope: []string{"contacts.read", "contacts.list"},
		Audience: "https://api.acme.example", Resource: "https://api.acme.example/contacts", Tenant: "t-1",
		Claims: []string{"org_id"}, MaxTokenLifetime: time.Hour}
	if grant == bundle.GrantTokenExchange {
		e.SubjectToken = bundle.SubjectBackendAssertion
	}
	if mod != nil {
		mod(e)
	}
	return e
}

func sha(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// TestGrantsAgainstOP: each grant with each client authentication gets a
// token from the real authorization server, with exactly the configured
// scopes, audience, resource, tenant and claims in the request.
func TestGrantsAgainstOP(t *testing.T) {
	w := newWorld(t)
	for _, grant := range []bundle.Grant{bundle.GrantClientCredentials, bundle.GrantTokenExchange} {
		for _, auth := range []string{"basic", "post", "jwt"} {
			t.Run(fmt.Sprintf("%s/%s", grant, auth), func(t *testing.T) {
				c := w.client(t, nil)
				before := w.op.Count()
				r := &egress.Request{Spec: spec(w.prov[auth], grant, nil), RouteID: "crm.get", Subject: "spiffe://d/w1", KeyBinding: "software"}
				if grant == bundle.GrantTokenExchange {
					r.SubjectToken = w.subjectToken(t, "spiffe://d/w1")
				}
				tok, err := c.Token(t.Context(), r)
				if err != nil {
					t.Fatalf("Token = %v", err)
				}
				if tok.AccessToken == "" || tok.FromCache || tok.SHA256 != sha(tok.AccessToken) {
					t.Errorf("token = %s, from cache %v", tok, tok.FromCache)
				}
				if tok.Lifetime < 9*time.Minute || tok.Lifetime > 10*time.Minute {
					t.Errorf("lifetime = %s, want about the OP's 10 min", tok.Lifetime)
				}
				if strings.Join(tok.Scope, " ") != "contacts.read contacts.list" {
					t.Errorf("granted scope = %q, want exactly the configured two", tok.Scope)
				}
				reqs := w.op.Requests()
				if len(reqs) != before+1 {
					t.Fatalf("the OP saw %d token requests, want 1", len(reqs)-before)
				}
				got := reqs[len(reqs)-1]
				wantAuth := map[string]string{"basic": "client_secret_basic", "post": "client_secret_post", "jwt": "private_key_jwt"}[auth]
				if got.GrantType != string(grant) || got.ClientAuth != wantAuth || got.Scope != "contacts.read contacts.list" ||
					got.Audience != "https://api.acme.example" || got.Resource != "https://api.acme.example/contacts" ||
					got.Tenant != "t-1" || got.Claims != `{"access_token":{"org_id":null}}` {
					t.Errorf("the OP received %+v", got)
				}
				if grant == bundle.GrantTokenExchange && (!got.HasSubjectToken || got.SubjectTokenType != "urn:ietf:params:oauth:token-type:jwt") {
					t.Errorf("exchange without the subject token: %+v", got)
				}
				if auth == "jwt" && !slices.Equal(got.AssertionAudience, []string{w.op.Issuer}) {
					t.Errorf("client assertion aud = %q, want the issuer", got.AssertionAudience)
				}
			})
		}
	}
}

// TestClientAssertionAudience: without a declared issuer the client
// assertion's aud is the token endpoint (RFC 7523 §3); this OP wants its
// issuer there, so it refuses, and the refusal is an *egress.Error.
func TestClientAssertionAudience(t *testing.T) {
	w := newWorld(t)
	p := *w.prov["jwt"]
	p.Issuer = ""
	_, err := w.client(t, nil).Token(t.Context(), &egress.Request{Spec: spec(&p, bundle.GrantClientCredentials, nil), RouteID: "r", Subject: "s"})
	if _, ok := errors.AsType[*egress.Error](err); !ok {
		t.Fatalf("Token = %v, want an *egress.Error", err)
	}
	reqs := w.op.Requests()
	if got := reqs[len(reqs)-1].AssertionAudience; !slices.Equal(got, []string{w.op.TokenEndpoint}) {
		t.Errorf("client assertion aud = %q, want the token endpoint", got)
	}
}

// TestTokenRefused: an answer outside the route's limits is refused, and
// a token exchange whose subject the OP does not accept fails.
func TestTokenRefused(t *testing.T) {
	w := newWorld(t)
	r := func(mod func(e *bundle.Egress)) *egress.Request {
		return &egress.Request{Spec: spec(w.prov["basic"], bundle.GrantClientCredentials, mod), RouteID: "r", Subject: "s", KeyBinding: "software"}
	}
	t.Run("lifetime over the maximum", func(t *testing.T) {
		_, err := w.client(t, nil).Token(t.Context(), r(func(e *bundle.Egress) { e.MaxTokenLifetime = 5 * time.Minute }))
		if err == nil || !strings.Contains(err.Error(), "exceeds the route's max_token_lifetime_seconds 300") {
			t.Errorf("Token = %v, want the lifetime refused", err)
		}
	})
	t.Run("scope wider than requested", func(t *testing.T) {
		w.op.SetWiden("contacts.write")
		defer w.op.SetWiden("")
		_, err := w.client(t, nil).Token(t.Context(), r(nil))
		if err == nil || !strings.Contains(err.Error(), `wider than requested ("contacts.write"`) {
			t.Errorf("Token = %v, want the widened scope refused", err)
		}
	})
	t.Run("signer class below the egress minimum", func(t *testing.T) {
		before := w.op.Count()
		_, err := w.client(t, nil).Token(t.Context(), r(func(e *bundle.Egress) { e.MinSignerClass = signerclass.HardwareLocal }))
		if err == nil || !strings.Contains(err.Error(), "below the egress minimum") || w.op.Count() != before {
			t.Errorf("Token = %v (%d requests), want a refusal before any request", err, w.op.Count()-before)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		bad, _ := egress.SecretCredential("wrong")
		c, _ := egress.New(egress.Config{Credentials: map[string]egress.Credential{"basic": bad}})
		_, err := c.Token(t.Context(), r(nil))
		if err == nil || !strings.Contains(err.Error(), "answered 400 (invalid_client)") || strings.Contains(err.Error(), "wrong") {
			t.Errorf("Token = %v, want invalid_client naming no secret", err)
		}
	})
	t.Run("exchange of a forged subject token", func(t *testing.T) {
		req := &egress.Request{Spec: spec(w.prov["post"], bundle.GrantTokenExchange, nil), RouteID: "r", Subject: "s",
			SubjectToken: "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.AAAA"}
		if _, err := w.client(t, nil).Token(t.Context(), req); err == nil || !strings.Contains(err.Error(), "answered 400") {
			t.Errorf("Token = %v, want the OP's refusal", err)
		}
	})
	t.Run("exchange without a subject token", func(t *testing.T) {
		req := &egress.Request{Spec: spec(w.prov["post"], bundle.GrantTokenExchange, nil), RouteID: "r", Subject: "s"}
		if _, err := w.client(t, nil).Token(t.Context(), req); err == nil {
			t.Error("Token without a subject token succeeded")
		}
	})
}

// TestOutageAndRecovery: the provider down (connections refused) or slower
// than the timeout fails the request; failures are not cached, so the
// first request after it is back gets a token.
func TestOutageAndRecovery(t *testing.T) {
	w := newWorld(t)
	c, err := egress.New(egress.Config{Credentials: w.creds, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := &egress.Request{Spec: spec(w.prov["basic"], bundle.GrantClientCredentials, nil), RouteID: "r", Subject: "s"}
	w.op.Stop()
	if _, err := c.Token(t.Context(), r); err == nil || !strings.Contains(err.Error(), "dial tcp") {
		t.Errorf("provider down: Token = %v, want a dial error (the provider is not listening)", err)
	}
	w.op.Restart()
	w.op.SetDelay(2 * time.Second)
	start := time.Now()
	if _, err := c.Token(t.Context(), r); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("provider slow: Token = %v, want the deadline", err)
	}
	t.Logf("a slow provider failed after %s (timeout 300ms)", time.Since(start))
	w.op.SetDelay(0)
	tok, err := c.Token(t.Context(), r)
	if err != nil || tok.FromCache {
		t.Fatalf("after recovery: Token = %v, %v", tok, err)
	}
}

// TestCache: a token is served until its lifetime minus the margin and
// never after; the key separates subjects, tenants and routes, not the
// order of the scopes.
func TestCache(t *testing.T) {
	w := newWorld(t)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	c := w.client(t, clock)
	base := spec(w.prov["basic"], bundle.GrantClientCredentials, nil)
	get := func(e *bundle.Egress, route, subject string) egress.Token {
		t.Helper()
		tok, err := c.Token(t.Context(), &egress.Request{Spec: e, RouteID: route, Subject: subject})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	first := get(base, "r", "alice")
	again := get(base, "r", "alice")
	if !again.FromCache || again.SHA256 != first.SHA256 {
		t.Fatalf("second request: from cache %v, same token %v", again.FromCache, again.SHA256 == first.SHA256)
	}
	reordered := *base
	reordered.Scope = []string{"contacts.list", "contacts.read"}
	if tok := get(&reordered, "r", "alice"); !tok.FromCache {
		t.Error("the same scope set in another order missed the cache")
	}
	otherTenant := *base
	otherTenant.Tenant = "t-2"
	for name, tok := range map[string]egress.Token{
		"another subject": get(base, "r", "bob"),
		"another tenant":  get(&otherTenant, "r", "alice"),
		"another route":   get(base, "r2", "alice"),
	} {
		if tok.FromCache || tok.SHA256 == first.SHA256 {
			t.Errorf("%s: from cache %v, shares alice's token %v", name, tok.FromCache, tok.SHA256 == first.SHA256)
		}
	}
	// The OP issues 10 min; the margin is a tenth: served until 9 min.
	advance(9*time.Minute - time.Second)
	if tok := get(base, "r", "alice"); !tok.FromCache {
		t.Error("expired before lifetime minus margin")
	}
	advance(time.Second)
	if tok := get(base, "r", "alice"); tok.FromCache || tok.SHA256 == first.SHA256 {
		t.Error("served from the cache at lifetime minus margin")
	}

	// A token that would not outlive its margin is used once, not cached.
	w.op.SetLifetime(4 * time.Second)
	defer w.op.SetLifetime(10 * time.Minute)
	short := get(base, "short", "alice")
	if again := get(base, "short", "alice"); again.FromCache || again.SHA256 == short.SHA256 {
		t.Error("a token shorter than the margin was cached")
	}
}

// TestSingleFlight: concurrent requests for one key share one token
// request, counted at the OP; another key gets its own.
func TestSingleFlight(t *testing.T) {
	w := newWorld(t)
	c := w.client(t, nil)
	w.op.SetDelay(300 * time.Millisecond) // all of them arrive while the first waits
	const n = 20
	before := w.op.Count()
	var wg sync.WaitGroup
	var failed atomic.Int32
	hashes := make([]string, n)
	for i := range n {
		wg.Go(func() {
			tok, err := c.Token(t.Context(), &egress.Request{Spec: spec(w.prov["post"], bundle.GrantClientCredentials, nil), RouteID: "r", Subject: "alice"})
			if err != nil {
				failed.Add(1)
				return
			}
			hashes[i] = tok.SHA256
		})
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d failed", failed.Load(), n)
	}
	if got := w.op.Count() - before; got != 1 {
		t.Errorf("the OP saw %d token requests for %d concurrent callers, want 1", got, n)
	}
	for _, h := range hashes {
		if h != hashes[0] {
			t.Fatal("concurrent callers got different tokens")
		}
	}
}

// TestCheck: a provider is usable only with a credential of its kind.
func TestCheck(t *testing.T) {
	w := newWorld(t)
	c := w.client(t, nil)
	for _, tc := range []struct {
		p    bundle.EgressProvider
		want string // "" for no error
	}{
		{bundle.EgressProvider{ID: "basic", ClientAuth: bundle.ClientSecretBasic}, ""},
		{bundle.EgressProvider{ID: "jwt", ClientAuth: bundle.PrivateKeyJWT}, ""},
		{bundle.EgressProvider{ID: "nobody", ClientAuth: bundle.ClientSecretBasic}, "no credential"},
		{bundle.EgressProvider{ID: "basic", ClientAuth: bundle.PrivateKeyJWT}, "needs a private key"},
		{bundle.EgressProvider{ID: "jwt", ClientAuth: bundle.ClientSecretPost}, "needs a client secret"},
	} {
		err := c.Check(&tc.p)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Check(%s, %s) = %v, want %q", tc.p.ID, tc.p.ClientAuth, err, tc.want)
		}
	}
}

// TestReadCredentials: secret and key files, their modes, and that neither
// shows up when printed.
func TestReadCredentials(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := egress.ReadSecret(write("secret", "hunter2\n", 0o600))
	if err != nil || c.IsKey() {
		t.Fatalf("ReadSecret = %v, %v", c, err)
	}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%#v", c), fmt.Sprintf("%+v", struct{ C egress.Credential }{c})} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("printed credential shows the secret: %s", s)
		}
	}
	for name, path := range map[string]string{
		"group readable": write("open", "x\n", 0o640),
		"empty":          write("empty", "\n", 0o600),
		"two lines":      write("two", "a\nb\n", 0o600),
		"missing":        filepath.Join(dir, "nope"),
		"a directory":    dir,
	} {
		if _, err := egress.ReadSecret(path); err == nil {
			t.Errorf("ReadSecret(%s) accepted", name)
		}
	}

	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ec)
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	k, err := egress.ReadKey(write("key.pem", pemKey, 0o600))
	if err != nil || !k.IsKey() || k.Algorithm() != "ES256" || k.KID() == "" {
		t.Fatalf("ReadKey = %v, %v", k, err)
	}
	if strings.Contains(fmt.Sprintf("%v %#v", k, k), strings.TrimSpace(pemKey)[30:60]) {
		t.Error("printed key credential shows key material")
	}
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ = x509.MarshalPKCS8PrivateKey(edPriv)
	if k, err := egress.ReadKey(write("ed.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), 0o600)); err != nil || k.Algorithm() != "EdDSA" {
		t.Errorf("Ed25519 key: %v, %v", k, err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, _ = x509.MarshalPKCS8PrivateKey(p384)
	for name, path := range map[string]string{
		"group readable": write("open.pem", pemKey, 0o644),
		"not PEM":        write("raw", "hello", 0o600),
		"P-384":          write("p384.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), 0o600),
		"two blocks":     write("two.pem", pemKey+pemKey, 0o600),
	} {
		if _, err := egress.ReadKey(path); err == nil {
			t.Errorf("ReadKey(%s) accepted", name)
		}
	}
}

// TestIntrospection: with an introspection endpoint every new token is
// introspected (RFC 7662) with the provider's client authentication; a
// token the provider calls inactive, or reports with a scope not asked
// for, is refused; a cached token is not introspected again.
func TestIntrospection(t *testing.T) {
	w := newWorld(t)
	c := w.client(t, nil)
	for _, auth := range []string{"basic", "post", "jwt"} {
		p := *w.prov[auth]
		p.IntrospectionEndpoint = w.op.IntrospectionEndpoint
		r := func(subject string) *egress.Request {
			return &egress.Request{Spec: spec(&p, bundle.GrantClientCredentials, nil), RouteID: "r", Subject: subject}
		}
		before := w.op.Introspections()
		if _, err := c.Token(t.Context(), r("alice")); err != nil {
			t.Fatalf("%s: Token = %v", auth, err)
		}
		if tok, err := c.Token(t.Context(), r("alice")); err != nil || !tok.FromCache {
			t.Fatalf("%s: second Token = %v, %v", auth, tok, err)
		}
		if got := w.op.Introspections() - before; got != 1 {
			t.Errorf("%s: %d introspections, want 1 (the cached token is not introspected again)", auth, got)
		}
		w.op.SetIntrospection(true, "")
		if _, err := c.Token(t.Context(), r("bob")); err == nil || !strings.Contains(err.Error(), "not active") {
			t.Errorf("%s: inactive token: %v", auth, err)
		}
		w.op.SetIntrospection(false, "contacts.write")
		if _, err := c.Token(t.Context(), r("carol")); err == nil || !strings.Contains(err.Error(), "introspection: the token's scope is wider") {
			t.Errorf("%s: introspected scope wider: %v", auth, err)
		}
		w.op.SetIntrospection(false, "")
	}
}

// TestCallerGoesAway: a caller whose context ends stops waiting at once;
// the token request it started still completes for the others and fills
// the cache.
func TestCallerGoesAway(t *testing.T) {
	w := newWorld(t)
	c := w.client(t, nil)
	w.op.SetDelay(500 * time.Millisecond)
	r := &egress.Request{Spec: spec(w.prov["basic"], bundle.GrantClientCredentials, nil), RouteID: "r", Subject: "s"}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Token(ctx, r); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Token with a short context = %v, want the deadline", err)
	}
	t.Logf("the caller stopped waiting after %s (its context: 50ms, the provider: 500ms)", time.Since(start))
	// A second caller joins the request still in flight.
	if _, err := c.Token(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	if w.op.Count() != 1 {
		t.Errorf("%d token requests, want the first one shared", w.op.Count())
	}
	if tok, err := c.Token(t.Context(), r); err != nil || !tok.FromCache {
		t.Errorf("third Token = %v, %v; want the cached token", tok, err)
	}
}

// TestMetrics: token requests are counted by provider and outcome, timed,
// and cache hits counted; nothing names a subject or route. Every
// provider with a credential has its counts at 0 before any request, so
// an increase() alert sees the first failure.
func TestMetrics(t *testing.T) {
	w := newWorld(t)
	reader := sdkmetric.NewManualReader()
	c, err := egress.New(egress.Config{Credentials: w.creds, Timeout: time.Second,
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	if err != nil {
		t.Fatal(err)
	}
	got, timed := collect(t, reader)
	for id := range w.creds {
		for _, k := range []string{
			"tpcluster.egress.token_requests outcome=ok provider=" + id,
			"tpcluster.egress.token_requests outcome=failed provider=" + id,
			"tpcluster.egress.cache_hits provider=" + id,
		} {
			if v, ok := got[k]; !ok || v != 0 {
				t.Errorf("before any request: %s = %d (exported: %t), want an exported 0", k, v, ok)
			}
		}
	}
	if len(got) != 3*len(w.creds) || timed != 0 {
		t.Errorf("before any request: %v, %d timed; want 3 zero counts per provider, none timed", got, timed)
	}

	r := &egress.Request{Spec: spec(w.prov["basic"], bundle.GrantClientCredentials, nil), RouteID: "r", Subject: "alice"}
	for range 3 {
		if _, err := c.Token(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	w.op.Stop()
	r2 := *r
	r2.Subject = "bob"
	if _, err := c.Token(t.Context(), &r2); err == nil {
		t.Fatal("a token from a stopped provider")
	}
	got, timed = collect(t, reader)
	want := map[string]int64{
		"tpcluster.egress.token_requests outcome=ok provider=basic":     1,
		"tpcluster.egress.token_requests outcome=failed provider=basic": 1,
		"tpcluster.egress.cache_hits provider=basic":                    2,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if timed != 2 {
		t.Errorf("%d token requests timed, want 2", timed)
	}
}

// collect reads the counters by "name attr=value ..." and the number of
// timed token requests.
func collect(t *testing.T, reader *sdkmetric.ManualReader) (map[string]int64, uint64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	var timed uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range data.DataPoints {
					key := m.Name
					for _, kv := range p.Attributes.ToSlice() {
						key += " " + string(kv.Key) + "=" + kv.Value.AsString()
					}
					got[key] = p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range data.DataPoints {
					timed += p.Count
				}
			}
		}
	}
	return got, timed
}
