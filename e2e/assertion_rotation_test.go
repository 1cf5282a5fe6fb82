package e2e

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/backendjwt"
	"github.com/tpcluster/tpcluster/internal/assertion"
	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/signer"
)

const (
	rotIssuer   = "https://verifiers.e2e.example"
	rotAudience = "orders-backend"
	rotTTL      = 10 * time.Second // the route's ttl_seconds: the old key's grace
)

// rotUpstream is a backend behind backendjwt.Middleware: it counts the
// assertions it verified, by kid, and the requests it refused.
type rotUpstream struct {
	*httptest.Server
	v        atomic.Pointer[backendjwt.Verifier] // set once the nodes' JWKS is up
	refused  atomic.Int64
	mu       sync.Mutex
	verified map[string]int // guarded by mu; by kid
	reasons  []string       // guarded by mu; why requests were refused
}

// statusWriter remembers the status the middleware wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func newRotUpstream(t testing.TB) *rotUpstream {
	u := &rotUpstream{verified: map[string]int{}}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := backendjwt.FromContext(r.Context())
		h, _, _ := strings.Cut(r.Header.Get("X-TrustPlane-Assertion"), ".")
		var hdr struct{ Kid string }
		if b, err := base64.RawURLEncoding.DecodeString(h); err == nil {
			_ = json.Unmarshal(b, &hdr)
		}
		u.mu.Lock()
		u.verified[hdr.Kid]++
		u.mu.Unlock()
		fmt.Fprintf(w, `{"ok":true,"sub":%q}`, c.Subject)
	})
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := u.v.Load()
		if v == nil {
			u.refused.Add(1)
			http.Error(w, "no verifier yet", http.StatusServiceUnavailable)
			return
		}
		rw := &statusWriter{ResponseWriter: w}
		v.Middleware(backendjwt.RequestOptions{}, ok).ServeHTTP(rw, r)
		if rw.status != 0 && rw.status != http.StatusOK {
			u.refused.Add(1)
			u.mu.Lock()
			u.reasons = append(u.reasons, fmt.Sprintf("%d %s", rw.status, r.URL.Path))
			u.mu.Unlock()
		}
	}))
	t.Cleanup(u.Close)
	return u
}

// TestAssertionKeyRotationUnderLoad is issue 15 item 4 and the rotation
// runbook of docs/BACKEND-JWT.md: while signed requests run against two
// nodes on a route with backend_assertion, the trust material lists each
// node's new key next, then active with the old one retired; the nodes hold
// both keys (--assertion-key twice) and switch without a restart. No
// upstream refuses a valid assertion, every allowed request was verified
// upstream, no request is denied, and once the old keys' grace has passed
// and a trust material without them is out, an assertion signed with an
// old key is refused by backendjwt with a fresh JWKS.
func TestAssertionKeyRotationUnderLoad(t *testing.T) {
	const (
		loadFor = 20 * time.Second
		workers = 3
		pace    = 100 * time.Millisecond // per worker: a few hundred requests in all
	)
	c := newFleet(t, fleetOpts{servers: 1, edit: func(w *world, policy map[string]any) {
		g := policy["route_groups"].([]any)[0].(map[string]any)
		g["routes"] = append(g["routes"].([]any), w.route("orders.asserted", "GET", "/v1/asserted/{id}",
			map[string]any{"backend_assertion": map[string]any{"audience": rotAudience, "ttl_seconds": int(rotTTL / time.Second)}}))
	}})

	// Each node's old and new key, generated here, written 0600.
	ids := []string{"rot-0", "rot-1"}
	oldKeys, newKeys := map[string]*keyfile.PrivateKey{}, map[string]*keyfile.PrivateKey{}
	keyFiles := map[string][]string{}
	for _, id := range ids {
		for _, gen := range []string{"a", "b"} {
			k, err := keyfile.Generate(id + "-" + gen)
			if err != nil {
				t.Fatal(err)
			}
			base := filepath.Join(c.dir, "assertion-"+id+"-"+gen)
			if err := k.Write(base); err != nil {
				t.Fatal(err)
			}
			keyFiles[id] = append(keyFiles[id], base+".key")
			if gen == "a" {
				oldKeys[id] = k
			} else {
				newKeys[id] = k
			}
		}
	}
	type listed = rotListed
	seq := 1
	publish := func(keys []listed) {
		t.Helper()
		seq++
		rotPublish(t, c, seq, keys)
	}
	var start []listed
	for _, id := range ids {
		start = append(start, listed{oldKeys[id], "active"})
	}
	publish(start) // (2, 2): the old keys active

	up := newRotUpstream(t)
	var nodes []*node
	for _, id := range ids {
		flags := []string{"--upstream", up.URL, "--assertion-issuer", rotIssuer}
		for _, f := range keyFiles[id] {
			flags = append(flags, "--assertion-key", f)
		}
		nodes = append(nodes, c.start(t, nodeOpts{id: id, flags: flags}))
	}
	c.allOn(t, len(ids), 2, 2)
	v, err := backendjwt.New(backendjwt.Config{JWKSURL: nodes[0].URL + "/_tp/jwks.json", Issuer: rotIssuer, Audience: rotAudience})
	if err != nil {
		t.Fatal(err)
	}
	up.v.Store(v)

	// The load: workers sign and send requests to both nodes until loadFor
	// has passed. Nothing in the workers calls t.Fatal.
	var (
		allowed, denied atomic.Int64
		mu              sync.Mutex
		denials         []string // guarded by mu
		wg              sync.WaitGroup
	)
	hc := &http.Client{Timeout: 30 * time.Second}
	began := time.Now()
	stop := began.Add(loadFor)
	for w := range workers {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				n := nodes[(w+i)%len(nodes)]
				got, err := rotRequest(c.world, hc, fmt.Sprintf("%s/v1/asserted/w%d-%d", n.URL, w, i))
				switch {
				case err == nil && got == "200":
					allowed.Add(1)
				default:
					denied.Add(1)
					mu.Lock()
					denials = append(denials, fmt.Sprintf("%s at %s: %s %v", n.URL, time.Since(began).Round(time.Millisecond), got, err))
					mu.Unlock()
				}
				time.Sleep(pace) // paces the load; nothing waits on an effect here
			}
		})
	}

	// Mid-load, the runbook: (2) the new keys next, (3) the new keys active
	// and the old ones retired. The nodes already hold both keys.
	time.Sleep(4 * time.Second) // schedules the step: the load runs on the old keys first
	var next []listed
	for _, id := range ids {
		next = append(next, listed{oldKeys[id], "active"}, listed{newKeys[id], "next"})
	}
	publish(next)
	nextAt := time.Since(began)
	c.allOn(t, len(ids), 3, 3)
	nextOn := time.Since(began)
	// More than the verifier's 5 s unknown-kid refetch spacing after its
	// first fetch, so the first new kid it meets makes it refetch.
	time.Sleep(max(0, 10*time.Second-time.Since(began)))
	var switched []listed
	for _, id := range ids {
		switched = append(switched, listed{oldKeys[id], "retired"}, listed{newKeys[id], "active"})
	}
	publish(switched)
	switchAt := time.Since(began)
	c.allOn(t, len(ids), 4, 4)
	switchOn := time.Since(began)
	wg.Wait()
	loadTook := time.Since(began)

	mu.Lock()
	up.mu.Lock()
	byKID := kidCounts(up.verified)
	verifiedTotal := 0
	for _, n := range up.verified {
		verifiedTotal += n
	}
	oldSigned, newSigned := 0, 0
	for _, id := range ids {
		oldSigned += up.verified[oldKeys[id].KID()]
		newSigned += up.verified[newKeys[id].KID()]
	}
	reasons := append([]string(nil), up.reasons...)
	up.mu.Unlock()
	t.Logf("load %s: %d requests allowed, %d denied; upstream verified %d (%s), refused %d; next published at %s (all nodes on it at %s), switch at %s (all nodes on it at %s)",
		loadTook.Round(time.Millisecond), allowed.Load(), denied.Load(), verifiedTotal, byKID, up.refused.Load(),
		nextAt.Round(time.Millisecond), nextOn.Round(time.Millisecond), switchAt.Round(time.Millisecond), switchOn.Round(time.Millisecond))
	if denied.Load() != 0 {
		t.Errorf("%d requests not allowed during the rotation, want 0: %s", denied.Load(), strings.Join(denials[:min(len(denials), 5)], "; "))
	}
	mu.Unlock()
	if up.refused.Load() != 0 {
		t.Errorf("the upstream refused %d assertions during the rotation, want 0: %s", up.refused.Load(), strings.Join(reasons[:min(len(reasons), 5)], "; "))
	}
	if int64(verifiedTotal) != allowed.Load() {
		t.Errorf("upstream verified %d requests, %d were allowed: want every allowed request verified", verifiedTotal, allowed.Load())
	}
	if allowed.Load() < 100 {
		t.Errorf("only %d requests allowed: the load did not run", allowed.Load())
	}
	if oldSigned == 0 || newSigned == 0 {
		t.Errorf("verified by kid %s: want assertions from both the old and the new keys", byKID)
	}
	// After the switch, each node signs with its new key only.
	for i, id := range ids {
		up.mu.Lock()
		before := kidCounts(up.verified)
		up.mu.Unlock()
		got, err := rotRequest(c.world, hc, fmt.Sprintf("%s/v1/asserted/after-%d", nodes[i].URL, i))
		if err != nil || got != "200" {
			t.Fatalf("%s after the switch: %s %v", id, got, err)
		}
		up.mu.Lock()
		now := kidCounts(up.verified)
		up.verified[newKeys[id].KID()]--
		lessOne := kidCounts(up.verified)
		up.verified[newKeys[id].KID()]++
		up.mu.Unlock()
		if lessOne != before {
			t.Errorf("%s after the switch: verified by kid went from %s to %s, want one more with %s only",
				id, before, now, newKeys[id].KID())
		}
	}

	// (4) After the old keys' grace (the longest ttl plus backendjwt's skew
	// from the switch), the trust material drops them.
	grace := rotTTL + backendjwt.DefaultSkew
	time.Sleep(max(0, grace-(time.Since(began)-switchOn))) // the grace is time that must pass, not an effect
	var final []listed
	for _, id := range ids {
		final = append(final, listed{newKeys[id], "active"})
	}
	publish(final)
	c.allOn(t, len(ids), 5, 5)
	for _, n := range nodes {
		resp, err := http.Get(n.URL + "/_tp/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, id := range ids {
			if strings.Contains(string(b), `"kid":"`+oldKeys[id].KID()+`"`) || !strings.Contains(string(b), `"kid":"`+newKeys[id].KID()+`"`) {
				t.Errorf("%s JWKS after the rotation = %s, want %s and not %s", n.URL, b, newKeys[id].KID(), oldKeys[id].KID())
			}
		}
	}
	// A fresh, otherwise valid assertion signed with a retired key (minted
	// here with the old private key, as a node still holding it would) is
	// refused by backendjwt with a fresh JWKS; the same with a new key
	// verifies, so the refusal is the key's.
	fresh, err := backendjwt.New(backendjwt.Config{JWKSURL: nodes[1].URL + "/_tp/jwks.json", Issuer: rotIssuer, Audience: rotAudience})
	if err != nil {
		t.Fatal(err)
	}
	mint := func(k *keyfile.PrivateKey) string {
		t.Helper()
		m, err := assertion.New(assertion.Config{Issuer: rotIssuer, Key: k})
		if err != nil {
			t.Fatal(err)
		}
		got, err := m.Mint(&assertion.Request{Spec: &bundle.BackendAssertion{Audience: rotAudience, TTL: rotTTL},
			Subject: wSubject, RouteID: "orders.asserted", Method: "GET", Target: "/v1/asserted/late"})
		if err != nil {
			t.Fatal(err)
		}
		return got.Token
	}
	for _, id := range ids {
		if _, err := fresh.Verify(t.Context(), mint(newKeys[id])); err != nil {
			t.Errorf("an assertion signed with %s's new key: %v, want it verified", id, err)
		}
		_, err := fresh.Verify(t.Context(), mint(oldKeys[id]))
		if !errors.Is(err, backendjwt.ErrInvalid) || !strings.Contains(err.Error(), "unknown kid") {
			t.Errorf("an assertion signed with %s's retired key after its grace: err = %v, want ErrInvalid, unknown kid", id, err)
		}
	}
	t.Logf("old keys dropped from the trust material %s after the switch (grace %s); a retired-key assertion refused", (time.Since(began) - switchOn).Round(time.Millisecond), grace)
}

// rotListed is one entry of the trust material's assertion_keys.
type rotListed struct {
	k      *keyfile.PrivateKey
	status string
}

// rotPublish re-signs c's trust material with assertion_keys set to keys,
// and c's policy, both at sequence seq, and publishes them with bundlepub.
func rotPublish(t testing.TB, c *channel, seq int, keys []rotListed) {
	t.Helper()
	var doc map[string]any
	b, err := os.ReadFile(c.trust)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "signed_by")
	delete(doc, "signature")
	var ak []any
	for _, l := range keys {
		ak = append(ak, map[string]any{"kid": l.k.KID(), "status": l.status,
			"public_key_b64url": base64.RawURLEncoding.EncodeToString(l.k.Public().Key)})
	}
	doc["assertion_keys"] = ak
	dir := t.TempDir()
	edited, trust, policy := filepath.Join(dir, "trust.edited.json"), filepath.Join(dir, "trust.json"), filepath.Join(dir, "policy.json")
	if b, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(edited, b, 0o644); err != nil {
		t.Fatal(err)
	}
	c.resign(t, edited, trust, seq)
	c.resign(t, c.policy, policy, seq)
	mustBundlepub(t, "publish", "--nats-url", c.url, "--trust-material", trust, "--policy-bundle", policy,
		"--bundle-public-key", c.bundlePub)
}

// rotRequest signs and sends one GET for orders.asserted as the world's
// caller and returns "200" or "<status> <reason>". It reports errors
// instead of failing the test, for the load's goroutines.
func rotRequest(w *world, hc *http.Client, rawURL string) (string, error) {
	req, err := http.NewRequest("GET", rawURL, http.NoBody)
	if err != nil {
		return "", err
	}
	tok, err := w.caller.MintPassport(signer.PassportOptions{Issuer: wIssuer, TrustDomain: wDomain, Subject: wSubject,
		Audience: wAudience, KID: wKID, IssuedAt: time.Now(), TTL: 5 * time.Minute})
	if err != nil {
		return "", err
	}
	s, err := w.caller.Sign(tok, &signer.Request{Method: req.Method, Scheme: req.URL.Scheme, Authority: req.URL.Host,
		Path: req.URL.EscapedPath(), RawQuery: req.URL.RawQuery, RouteID: "orders.asserted"})
	if err != nil {
		return "", err
	}
	for _, h := range s.Headers {
		req.Header.Set(h.Name, h.Value)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return "200", nil
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, b), nil
}

// kidCounts prints counts by kid in a stable order.
func kidCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, m[k])
	}
	return strings.TrimSpace(b.String())
}
