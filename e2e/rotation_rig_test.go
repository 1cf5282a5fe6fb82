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

// listedKey is one entry of the trust material's assertion_keys.
type listedKey struct {
	k      *keyfile.PrivateKey
	status string
}

// rotPublish re-signs c's trust material with assertion_keys set to keys,
// and c's policy, both at sequence seq, and publishes them with bundlepub.
func rotPublish(t testing.TB, c *channel, seq int, keys []listedKey) {
	t.Helper()
	dir := t.TempDir()
	edited, trust, policy := filepath.Join(dir, "trust.edited.json"), filepath.Join(dir, "trust.json"), filepath.Join(dir, "policy.json")
	writeAssertionKeys(t, c.trust, edited, keys)
	c.resign(t, edited, trust, seq)
	c.resign(t, c.policy, policy, seq)
	mustBundlepub(t, "publish", "--nats-url", c.url, "--trust-material", trust, "--policy-bundle", policy,
		"--bundle-public-key", c.bundlePub)
}

// writeAssertionKeys writes to edited the trust material at trust with its
// signature removed and assertion_keys set to keys, for the caller to sign.
func writeAssertionKeys(t testing.TB, trust, edited string, keys []listedKey) {
	t.Helper()
	var doc map[string]any
	b, err := os.ReadFile(trust)
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
	if b, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(edited, b, 0o644); err != nil {
		t.Fatal(err)
	}
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

// rotationRig is what the two key rotation-under-load tests share: a fleet
// with the orders.asserted route (backend_assertion), two node ids with an
// old and a new key each, an upstream behind backendjwt, the load and the
// checks on its outcome. How the nodes get their keys and the runbook's
// steps stay in each test.
type rotationRig struct {
	c       *channel
	ids     []string
	oldKeys map[string]*keyfile.PrivateKey // by id; filled by the test
	newKeys map[string]*keyfile.PrivateKey // by id; filled by the test
	up      *rotUpstream
	nodes   []*node // in the order of ids; set by startNodes
	hc      *http.Client
	seq     int // the last sequence published; the fleet starts at 1
}

func newRotationRig(t testing.TB) *rotationRig {
	t.Helper()
	c := newFleet(t, fleetOpts{servers: 1, edit: func(w *world, policy map[string]any) {
		g := policy["route_groups"].([]any)[0].(map[string]any)
		g["routes"] = append(g["routes"].([]any), w.route("orders.asserted", "GET", "/v1/asserted/{id}",
			map[string]any{"backend_assertion": map[string]any{"audience": rotAudience, "ttl_seconds": int(rotTTL / time.Second)}}))
	}})
	return &rotationRig{
		c:       c,
		ids:     []string{"rot-0", "rot-1"},
		oldKeys: map[string]*keyfile.PrivateKey{},
		newKeys: map[string]*keyfile.PrivateKey{},
		up:      newRotUpstream(t),
		hc:      &http.Client{Timeout: 30 * time.Second},
		seq:     1,
	}
}

// publish publishes, at the next sequence, trust material whose
// assertion_keys are the entries each returns for each id, in id order.
func (r *rotationRig) publish(t testing.TB, each func(id string) []listedKey) {
	t.Helper()
	var keys []listedKey
	for _, id := range r.ids {
		keys = append(keys, each(id)...)
	}
	r.seq++
	rotPublish(t, r.c, r.seq, keys)
}

// startNodes starts a node per id with the rig's upstream and issuer plus
// extra(id), waits until all are on (2, 2) and points the upstream's
// verifier at node 0's JWKS.
func (r *rotationRig) startNodes(t testing.TB, extra func(id string) []string) {
	t.Helper()
	for _, id := range r.ids {
		flags := append([]string{"--upstream", r.up.URL, "--assertion-issuer", rotIssuer}, extra(id)...)
		r.nodes = append(r.nodes, r.c.start(t, nodeOpts{id: id, flags: flags}))
	}
	r.c.allOn(t, len(r.ids), 2, 2)
	v, err := backendjwt.New(backendjwt.Config{JWKSURL: r.nodes[0].URL + "/_tp/jwks.json", Issuer: rotIssuer, Audience: rotAudience})
	if err != nil {
		t.Fatal(err)
	}
	r.up.v.Store(v)
}

// rotLoad is signed requests running against the rig's nodes.
type rotLoad struct {
	began           time.Time
	wg              sync.WaitGroup
	allowed, denied atomic.Int64
	mu              sync.Mutex
	denials         []string // guarded by mu
}

// since is the time from the load's start.
func (l *rotLoad) since() time.Duration { return time.Since(l.began) }

// startLoad starts three workers that sign and send requests to the nodes
// in turn, each paced at 100 ms (a few hundred requests in all), until
// loadFor has passed. Nothing in the workers calls t.Fatal; wait for them
// with checkLoad.
func (r *rotationRig) startLoad(loadFor time.Duration) *rotLoad {
	const (
		workers = 3
		pace    = 100 * time.Millisecond
	)
	l := &rotLoad{began: time.Now()}
	stop := l.began.Add(loadFor)
	for w := range workers {
		l.wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				n := r.nodes[(w+i)%len(r.nodes)]
				got, err := rotRequest(r.c.world, r.hc, fmt.Sprintf("%s/v1/asserted/w%d-%d", n.URL, w, i))
				switch {
				case err == nil && got == "200":
					l.allowed.Add(1)
				default:
					l.denied.Add(1)
					l.mu.Lock()
					l.denials = append(l.denials, fmt.Sprintf("%s at %s: %s %v", n.URL, l.since().Round(time.Millisecond), got, err))
					l.mu.Unlock()
				}
				time.Sleep(pace) // paces the load; nothing waits on an effect here
			}
		})
	}
	return l
}

// checkLoad waits for the load to end and checks its outcome: no request
// denied, no assertion refused upstream, every allowed request verified
// upstream, the load ran (100 or more allowed), and both the old and the
// new keys signed some. It returns the figures for the test's log.
func (r *rotationRig) checkLoad(t testing.TB, l *rotLoad) string {
	t.Helper()
	l.wg.Wait()
	took := l.since()
	r.up.mu.Lock()
	byKID := kidCounts(r.up.verified)
	verifiedTotal := 0
	for _, n := range r.up.verified {
		verifiedTotal += n
	}
	oldSigned, newSigned := 0, 0
	for _, id := range r.ids {
		oldSigned += r.up.verified[r.oldKeys[id].KID()]
		newSigned += r.up.verified[r.newKeys[id].KID()]
	}
	reasons := append([]string(nil), r.up.reasons...)
	r.up.mu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.denied.Load() != 0 {
		t.Errorf("%d requests not allowed during the rotation, want 0: %s", l.denied.Load(), strings.Join(l.denials[:min(len(l.denials), 5)], "; "))
	}
	if r.up.refused.Load() != 0 {
		t.Errorf("the upstream refused %d assertions during the rotation, want 0: %s", r.up.refused.Load(), strings.Join(reasons[:min(len(reasons), 5)], "; "))
	}
	if int64(verifiedTotal) != l.allowed.Load() {
		t.Errorf("upstream verified %d requests, %d were allowed: want every allowed request verified", verifiedTotal, l.allowed.Load())
	}
	if l.allowed.Load() < 100 {
		t.Errorf("only %d requests allowed: the load did not run", l.allowed.Load())
	}
	if oldSigned == 0 || newSigned == 0 {
		t.Errorf("verified by kid %s: want assertions from both the old and the new keys", byKID)
	}
	return fmt.Sprintf("load %s: %d requests allowed, %d denied; upstream verified %d (%s), refused %d",
		took.Round(time.Millisecond), l.allowed.Load(), l.denied.Load(), verifiedTotal, byKID, r.up.refused.Load())
}

// checkJWKS checks that n serves every id's new key and none of the old.
func (r *rotationRig) checkJWKS(t testing.TB, n *node) {
	t.Helper()
	resp, err := http.Get(n.URL + "/_tp/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, id := range r.ids {
		if strings.Contains(string(b), `"kid":"`+r.oldKeys[id].KID()+`"`) || !strings.Contains(string(b), `"kid":"`+r.newKeys[id].KID()+`"`) {
			t.Errorf("%s JWKS after the rotation = %s, want %s and not %s", n.URL, b, r.newKeys[id].KID(), r.oldKeys[id].KID())
		}
	}
}

// checkRetiredRefused checks that a fresh, otherwise valid assertion signed
// with a retired key (minted here with the old private key, as a node still
// holding it would) is refused by backendjwt with a fresh JWKS, and that the
// same with a new key verifies, so the refusal is the key's.
func (r *rotationRig) checkRetiredRefused(t testing.TB) {
	t.Helper()
	fresh, err := backendjwt.New(backendjwt.Config{JWKSURL: r.nodes[1].URL + "/_tp/jwks.json", Issuer: rotIssuer, Audience: rotAudience})
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
	for _, id := range r.ids {
		if _, err := fresh.Verify(t.Context(), mint(r.newKeys[id])); err != nil {
			t.Errorf("an assertion signed with %s's new key: %v, want it verified", id, err)
		}
		_, err := fresh.Verify(t.Context(), mint(r.oldKeys[id]))
		if !errors.Is(err, backendjwt.ErrInvalid) || !strings.Contains(err.Error(), "unknown kid") {
			t.Errorf("an assertion signed with %s's retired key after its grace: err = %v, want ErrInvalid, unknown kid", id, err)
		}
	}
}
