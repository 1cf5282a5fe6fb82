package proxy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/backendjwt"
	"github.com/tpcluster/tpcluster/internal/assertion"
	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/egress"
	"github.com/tpcluster/tpcluster/internal/egress/oauthtest"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/signer"
	"github.com/tpcluster/tpcluster/internal/transcript"
)

// egressRig is a rig whose policy bridges four routes to a real OAuth
// authorization server (zitadel/oidc's OP, in-process): client credentials
// with client_secret_basic, token exchange of the backend assertion with
// private_key_jwt, one route whose maximum lifetime the OP's tokens
// exceed, and one that requires a hardware signer for egress.
type egressRig struct {
	*rig
	op *oauthtest.Server
}

const (
	ccScope   = "crm.contacts.read crm.contacts.list"
	crmPrefix = "spiffe://proxy.local/crm/"
)

func newEgressRig(t *testing.T, mutate func(*Config)) *egressRig {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyCred, err := egress.KeyCredential(ec)
	if err != nil {
		t.Fatal(err)
	}
	nodeKey, err := keyfile.Generate("node-e-1")
	if err != nil {
		t.Fatal(err)
	}
	minter, err := assertion.New(assertion.Config{Issuer: fleetIssuer, Key: nodeKey})
	if err != nil {
		t.Fatal(err)
	}
	// The OP verifies the exchanged backend assertion with the fleet's
	// JWKS, as a provider configured to trust the verifiers would.
	var verifier *backendjwt.Verifier
	scopes := strings.Fields(ccScope + " crm.admin")
	er := &egressRig{}
	er.op = oauthtest.Start(t, oauthtest.Config{
		Clients: []oauthtest.Client{
			{ID: "tp-basic", Secret: "basic-secret", Scopes: scopes},
			{ID: "tp-jwt", Key: &ec.PublicKey, KID: keyCred.KID(), Scopes: scopes},
		},
		VerifySubjectToken: func(ctx context.Context, tok string) (string, error) {
			c, err := verifier.Verify(ctx, tok)
			if err != nil {
				return "", err
			}
			return c.Subject, nil
		},
	})
	secret, _ := egress.SecretCredential("basic-secret")
	client, err := egress.New(egress.Config{
		Credentials: map[string]egress.Credential{"acme": secret, "acme-jwt": keyCred},
		Timeout:     2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	edit := func(pol map[string]any, src []any) {
		crm := append([]any{map[string]any{"source_type": "software_jwks", "issuer": pIssuer, "trust_domain": pDomain,
			"subject_prefix": crmPrefix}}, src...)
		route := func(id, path string, eg map[string]any, extra map[string]any) map[string]any {
			r := map[string]any{"route_id": id, "method": "GET", "path_template": path, "freshness_class": "offline-ok",
				"allowed_sources": crm, "egress": eg}
			maps.Copy(r, extra)
			return r
		}
		cc := func(mod func(map[string]any)) map[string]any {
			e := map[string]any{"provider": "acme", "grant": "client_credentials", "scope": strings.Fields(ccScope),
				"audience": "https://api.acme.example", "tenant": "t-42", "max_token_lifetime_seconds": 900}
			if mod != nil {
				mod(e)
			}
			return e
		}
		pol["egress_providers"] = []any{
			map[string]any{"provider_id": "acme", "token_endpoint": er.op.TokenEndpoint, "client_id": "tp-basic", "client_auth": "client_secret_basic"},
			map[string]any{"provider_id": "acme-jwt", "token_endpoint": er.op.TokenEndpoint, "client_id": "tp-jwt",
				"client_auth": "private_key_jwt", "issuer": er.op.Issuer},
		}
		g := pol["route_groups"].([]any)[0].(map[string]any)
		g["routes"] = append(g["routes"].([]any),
			route("crm.cc", "/crm/contacts/{id}", cc(nil), nil),
			route("crm.exchange", "/crm/exchange/{id}", cc(func(e map[string]any) {
				e["provider"], e["grant"], e["subject_token"] = "acme-jwt", string(bundle.GrantTokenExchange), "backend_assertion"
			}), map[string]any{"backend_assertion": map[string]any{"audience": "acme-token-exchange", "ttl_seconds": 30}}),
			route("crm.short", "/crm/short/{id}", cc(func(e map[string]any) { e["max_token_lifetime_seconds"] = 300 }), nil),
			route("crm.hardware", "/crm/hardware/{id}", cc(func(e map[string]any) { e["min_signer_class"] = "hardware_local" }), nil),
		)
	}
	er.rig = buildRig(t, edit, func(c *Config) {
		c.Egress = client
		c.Assertions = minter
		c.ForwardProofHeaders = true // and still never to an egress route's upstream
		if mutate != nil {
			mutate(c)
		}
	})
	if verifier, err = backendjwt.New(backendjwt.Config{JWKSURL: er.srv.URL + "/_tp/jwks.json", Issuer: fleetIssuer, Audience: "acme-token-exchange"}); err != nil {
		t.Fatal(err)
	}
	return er
}

// signAsSubject is rig.sign for a passport of another subject.
func (r *rig) signAsSubject(t *testing.T, subject, method, target, routeID string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, r.srv.URL+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := r.key.MintPassport(signer.PassportOptions{Issuer: pIssuer, Subject: subject, Audience: pAudience,
		TrustDomain: pDomain, KID: "k1", IssuedAt: time.Now(), TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.key.Sign(tok, &signer.Request{Method: method, Scheme: req.URL.Scheme, Authority: req.URL.Host,
		Path: req.URL.EscapedPath(), RawQuery: req.URL.RawQuery, Headers: []transcript.Header{}, RouteID: routeID})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range s.Headers {
		req.Header.Set(h.Name, h.Value)
	}
	return req
}

// allowedAs signs a GET of target as subject for routeID, sends it, fails
// the test unless it is allowed (200), and returns the caller's request
// with what the upstream saw and the records so far.
func (r *rig) allowedAs(t *testing.T, subject, target, routeID string) (*http.Request, []*http.Request, []Record) {
	t.Helper()
	caller := r.signAsSubject(t, subject, "GET", target, routeID)
	if resp, text := do(t, caller); resp.StatusCode != 200 {
		t.Fatalf("GET %s as %s = %d %s", target, subject, resp.StatusCode, text)
	}
	seen, recs := r.seenAndRecords()
	return caller, seen, recs
}

func (r *rig) seenAndRecords() ([]*http.Request, []Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*http.Request(nil), r.seen...), append([]Record(nil), r.recs...)
}

func hashOf(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// checkBridged checks what an egress route's upstream received: the
// provider token whose hash the record names, and nothing of the caller's
// credentials (passport, proof headers, backend assertion).
func checkBridged(t *testing.T, up *http.Request, rec Record, caller *http.Request) string {
	t.Helper()
	auth := up.Header.Values("Authorization")
	if len(auth) != 1 || !strings.HasPrefix(auth[0], "Bearer ") {
		t.Fatalf("upstream Authorization = %q, want one Bearer", auth)
	}
	tok := strings.TrimPrefix(auth[0], "Bearer ")
	if tok == "" || tok == strings.TrimPrefix(caller.Header.Get("Authorization"), "Bearer ") {
		t.Fatal("the upstream got the caller's passport, not a provider token")
	}
	if rec.Egress == nil || rec.Egress.TokenSHA256 != hashOf(tok) {
		t.Errorf("record's token hash = %+v, want the SHA-256 of the forwarded token", rec.Egress)
	}
	for name, vals := range up.Header {
		for _, v := range vals {
			if strings.Contains(v, tok) && name != "Authorization" {
				t.Errorf("the token also went out in %s", name)
			}
		}
		if isTrustPlaneName(name) {
			switch strings.ToLower(name) {
			case "x-trustplane-subject", "x-trustplane-issuer", "x-trustplane-trust-domain", "x-trustplane-jti",
				"x-trustplane-route-id", "x-trustplane-key-binding":
			default:
				t.Errorf("upstream got %s: only the context headers may go to an egress upstream", name)
			}
		}
	}
	for _, h := range []string{"X-Trustplane-Proof", "X-Trustplane-Nonce", "X-Trustplane-Body-Sha256", "X-Trustplane-Transcript-Sha256"} {
		if v := caller.Header.Get(h); v != "" {
			for _, vals := range up.Header {
				for _, got := range vals {
					if strings.Contains(got, v) {
						t.Errorf("the caller's %s value reached the upstream", h)
					}
				}
			}
		}
	}
	return tok
}

// TestEgressClientCredentials: an allowed request gets a client
// credentials token with exactly the route's scopes; the upstream receives
// it and nothing of the caller's credentials, even with
// --forward-proof-headers; the next request of the subject uses the cache.
func TestEgressClientCredentials(t *testing.T) {
	r := newEgressRig(t, nil)
	caller, seen, recs := r.allowedAs(t, crmPrefix+"alice", "/crm/contacts/1", "crm.cc")
	tok := checkBridged(t, seen[0], recs[0], caller)
	reqs := r.op.Requests()
	if len(reqs) != 1 || reqs[0].GrantType != "client_credentials" || reqs[0].ClientAuth != "client_secret_basic" ||
		reqs[0].Scope != ccScope || reqs[0].Audience != "https://api.acme.example" || reqs[0].Tenant != "t-42" {
		t.Fatalf("the OP received %+v", reqs)
	}
	eg := recs[0].Egress
	if eg.Provider != "acme" || eg.Grant != "client_credentials" || strings.Join(eg.Scopes, " ") != ccScope ||
		eg.Audience != "https://api.acme.example" || eg.FromCache || eg.Lifetime < 9*time.Minute || eg.Lifetime > 10*time.Minute {
		t.Errorf("record = %+v", eg)
	}

	again, seen, recs := r.allowedAs(t, crmPrefix+"alice", "/crm/contacts/2", "crm.cc")
	if tok2 := checkBridged(t, seen[1], recs[1], again); tok2 != tok || !recs[1].Egress.FromCache || r.op.Count() != 1 {
		t.Errorf("second request: same token %v, from cache %v, token requests %d; want the cached token", tok2 == tok, recs[1].Egress.FromCache, r.op.Count())
	}
	// Another subject never shares it.
	bob, seen, recs := r.allowedAs(t, crmPrefix+"bob", "/crm/contacts/3", "crm.cc")
	if tok3 := checkBridged(t, seen[2], recs[2], bob); tok3 == tok || recs[2].Egress.FromCache || r.op.Count() != 2 {
		t.Errorf("bob: shares alice's token %v, from cache %v, token requests %d", tok3 == tok, recs[2].Egress.FromCache, r.op.Count())
	}
}

// TestEgressTokenExchange: the backend assertion is exchanged
// (private_key_jwt, RFC 8693) for a provider token whose subject is the
// passport's; the assertion itself does not go upstream.
func TestEgressTokenExchange(t *testing.T) {
	r := newEgressRig(t, nil)
	caller, seen, recs := r.allowedAs(t, crmPrefix+"carol", "/crm/exchange/1", "crm.exchange")
	checkBridged(t, seen[0], recs[0], caller)
	reqs := r.op.Requests()
	if len(reqs) != 1 || reqs[0].GrantType != string(bundle.GrantTokenExchange) || reqs[0].ClientAuth != "private_key_jwt" ||
		reqs[0].Scope != ccScope || !reqs[0].HasSubjectToken || reqs[0].SubjectTokenType != "urn:ietf:params:oauth:token-type:jwt" {
		t.Fatalf("the OP received %+v", reqs)
	}
	if recs[0].AssertionJTI == "" || recs[0].Egress.Grant != string(bundle.GrantTokenExchange) {
		t.Errorf("record: assertion %q, egress %+v", recs[0].AssertionJTI, recs[0].Egress)
	}
	if v := seen[0].Header.Values("X-Trustplane-Assertion"); len(v) != 0 {
		t.Errorf("the exchanged assertion went upstream too: %q", v)
	}
}

// TestEgressNotAnIngress: a caller presenting a provider token (a real
// one, from the same OP) instead of a passport is denied before anything
// else; no token request follows and the upstream is not reached.
func TestEgressNotAnIngress(t *testing.T) {
	r := newEgressRig(t, nil)
	_, seen, _ := r.allowedAs(t, crmPrefix+"alice", "/crm/contacts/1", "crm.cc")
	providerToken := seen[0].Header.Get("Authorization")
	before := r.op.Count()
	for _, tc := range []struct {
		name, auth, reason string
	}{
		{"provider token as bearer", providerToken, "passport_malformed"},
		{"provider token, proof headers of a real request", providerToken, "passport_malformed"},
		{"nothing", "", "passport_missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", r.srv.URL+"/crm/contacts/9", nil)
			if strings.Contains(tc.name, "proof headers") {
				signed := r.signAsSubject(t, crmPrefix+"alice", "GET", "/crm/contacts/9", "crm.cc")
				maps.Copy(req.Header, signed.Header)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, text := do(t, req)
			if resp.StatusCode != 401 || !strings.Contains(text, `"reason":"`+tc.reason+`"`) {
				t.Errorf("= %d %s, want 401 %s", resp.StatusCode, text, tc.reason)
			}
		})
	}
	if seen, _ := r.seenAndRecords(); len(seen) != 1 || r.op.Count() != before {
		t.Errorf("upstream reached %d times, %d token requests after the denials; want 1, 0", len(seen), r.op.Count()-before)
	}
}

// TestEgressProviderOutage: the provider down gives 502
// egress_token_unavailable, recorded, upstream not reached; once it is
// back the next request is bridged.
func TestEgressProviderOutage(t *testing.T) {
	r := newEgressRig(t, nil)
	r.op.Stop()
	resp, text := do(t, r.signAsSubject(t, crmPrefix+"alice", "GET", "/crm/contacts/1", "crm.cc"))
	if resp.StatusCode != 502 || !strings.Contains(text, `"reason":"egress_token_unavailable"`) {
		t.Fatalf("provider down: %d %s, want 502 egress_token_unavailable", resp.StatusCode, text)
	}
	seen, recs := r.seenAndRecords()
	if len(seen) != 0 {
		t.Fatalf("upstream reached %d times without a token", len(seen))
	}
	d := recs[0].Decision
	if d.Allowed() || d.Reason != "egress_token_unavailable" || d.Detail != "egress_token" || d.JTI == "" ||
		recs[0].Egress == nil || recs[0].Egress.Provider != "acme" || recs[0].Egress.TokenSHA256 != "" ||
		!strings.Contains(d.Err.Error(), "dial tcp") {
		t.Errorf("record = %+v, egress %+v, err %v", d, recs[0].Egress, d.Err)
	}
	r.op.Restart()
	caller, seen, recs := r.allowedAs(t, crmPrefix+"alice", "/crm/contacts/2", "crm.cc")
	checkBridged(t, seen[0], recs[1], caller)
}

// TestEgressRefusedTokens: a token living longer than the route allows,
// or granted a wider scope than asked, is refused with 502; a signer below
// the egress minimum is denied before the consume, and no token is asked.
func TestEgressRefusedTokens(t *testing.T) {
	r := newEgressRig(t, nil)
	resp, text := do(t, r.signAsSubject(t, crmPrefix+"alice", "GET", "/crm/short/1", "crm.short"))
	if resp.StatusCode != 502 || !strings.Contains(text, "egress_token_unavailable") {
		t.Errorf("lifetime over the maximum: %d %s, want 502", resp.StatusCode, text)
	}
	r.op.SetWiden("crm.admin")
	resp, text = do(t, r.signAsSubject(t, crmPrefix+"alice", "GET", "/crm/contacts/1", "crm.cc"))
	if resp.StatusCode != 502 || !strings.Contains(text, "egress_token_unavailable") {
		t.Errorf("widened scope: %d %s, want 502", resp.StatusCode, text)
	}
	r.op.SetWiden("")
	before := r.op.Count()
	resp, text = do(t, r.signAsSubject(t, crmPrefix+"alice", "GET", "/crm/hardware/1", "crm.hardware"))
	if resp.StatusCode != 403 || !strings.Contains(text, `"reason":"insufficient_key_binding"`) || r.op.Count() != before {
		t.Errorf("software signer on a hardware egress route: %d %s, %d token requests; want 403 insufficient_key_binding, none", resp.StatusCode, text, r.op.Count()-before)
	}
	seen, recs := r.seenAndRecords()
	if len(seen) != 0 {
		t.Errorf("upstream reached %d times", len(seen))
	}
	for i, why := range []string{"exceeds the route's max_token_lifetime_seconds 300", "wider than requested"} {
		if recs[i].Decision.Err == nil || !strings.Contains(recs[i].Decision.Err.Error(), why) {
			t.Errorf("record %d: %v, want %q", i, recs[i].Decision.Err, why)
		}
	}
}

// TestEgressSingleFlight: concurrent allowed requests of one subject share
// one token request at the OP.
func TestEgressSingleFlight(t *testing.T) {
	r := newEgressRig(t, nil)
	r.op.SetDelay(300 * time.Millisecond)
	const n = 8
	reqs := make([]*http.Request, n)
	for i := range n {
		reqs[i] = r.signAsSubject(t, crmPrefix+"dave", "GET", "/crm/contacts/"+string(rune('a'+i)), "crm.cc")
	}
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			resp, err := http.DefaultClient.Do(reqs[i])
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[i] = resp.StatusCode
		})
	}
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			t.Errorf("request %d = %d", i, c)
		}
	}
	if got := r.op.Count(); got != 1 {
		t.Errorf("the OP saw %d token requests for %d concurrent requests, want 1", got, n)
	}
	seen, _ := r.seenAndRecords()
	for _, up := range seen {
		if up.Header.Get("Authorization") != seen[0].Header.Get("Authorization") {
			t.Fatal("concurrent requests went upstream with different tokens")
		}
	}
}

// TestEgressCheckMode: check mode does not bridge: an egress route's
// request is denied egress_token_unavailable (detail egress_check_mode),
// and no token is asked for.
func TestEgressCheckMode(t *testing.T) {
	r := newEgressRig(t, nil)
	check := func(target, routeID string) (*http.Response, string) {
		q := r.signAsSubject(t, crmPrefix+"alice", "GET", target, routeID)
		c, _ := http.NewRequest("POST", r.srv.URL+"/_tp/check", bytes.NewReader(nil))
		maps.Copy(c.Header, q.Header)
		c.Header.Set("X-Original-Method", "GET")
		c.Header.Set("X-Original-Uri", q.URL.RequestURI())
		c.Header.Set("X-Forwarded-Host", q.URL.Host)
		c.Header.Set("X-Forwarded-Proto", "http")
		return do(t, c)
	}
	for i, tc := range []struct{ target, route string }{{"/crm/contacts/1", "crm.cc"}, {"/crm/exchange/1", "crm.exchange"}} {
		resp, text := check(tc.target, tc.route)
		if resp.StatusCode != 403 || resp.Header.Get("X-Trustplane-Reason") != "egress_token_unavailable" || resp.Header.Get("X-Trustplane-Status") != "502" {
			t.Errorf("%s: check = %d %s %v, want 403 with egress_token_unavailable/502", tc.route, resp.StatusCode, text, resp.Header)
		}
		if resp.Header.Get("Authorization") != "" || resp.Header.Get("X-Trustplane-Assertion") != "" || r.op.Count() != 0 {
			t.Errorf("%s: check mode asked for a token (%d) or returned a credential", tc.route, r.op.Count())
		}
		_, recs := r.seenAndRecords()
		if len(recs) != i+1 || recs[i].Decision.Detail != "egress_check_mode" || recs[i].AssertionJTI != "" ||
			recs[i].Egress == nil || recs[i].Egress.Provider == "" {
			t.Errorf("%s: record = %+v", tc.route, recs[i])
		}
	}
}
