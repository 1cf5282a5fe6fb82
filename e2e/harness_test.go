package e2e

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/signer"
	"github.com/tpcluster/tpcluster/internal/transcript"

	"github.com/tpcluster/tpcluster/internal/conformance"
)

// binDir holds the binaries built once per test run.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binary builds (once) and returns the path of cmd/<name>.
func binary(t testing.TB, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "tpcluster-e2e-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+string(os.PathSeparator), "./cmd/...")
		cmd.Dir = conformance.ModuleRoot(t)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/...: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

// world is one signed policy world: keys, bundles and a caller.
type world struct {
	dir       string
	caller    *signer.Key
	bundlePub string // path of the bundle-signing public key file
	trust     string // path of the signed trust material
	policy    string // path of the signed policy bundle
	// auditKeys are the audit key files of the fleet the trust material
	// lists in audit_nodes, by node id; a node started with one of these
	// ids signs its audit trail with it (docs/AUDIT.md).
	auditKeys map[string]string
	// route builds a route admitting the world's caller, for policy edits.
	route func(id, method, tmpl string, extra map[string]any) map[string]any
}

const (
	wIssuer   = "https://issuer.e2e.example"
	wKID      = "caller-1"
	wDomain   = "e2e.local"
	wAudience = "orders-api"
	wSubject  = "spiffe://e2e.local/workload/orders"
)

// newWorld writes a signed trust material and policy bundle with the routes
// the e2e tests use. Keys are generated here, never committed. Each of
// auditNodes gets an audit key, listed as an active fleet member.
func newWorld(t testing.TB, auditNodes ...string) *world {
	t.Helper()
	return newWorldWith(t, nil, auditNodes...)
}

// newWorldWith is newWorld with a last edit of the policy document before
// it is signed.
func newWorldWith(t testing.TB, edit func(w *world, policy map[string]any), auditNodes ...string) *world {
	t.Helper()
	dir := t.TempDir()
	caller, err := signer.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	bk, err := keyfile.Generate("e2e-bundle-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := bk.Write(filepath.Join(dir, "bundle")); err != nil {
		t.Fatal(err)
	}
	w := &world{dir: dir, caller: caller, bundlePub: filepath.Join(dir, "bundle.pub"),
		trust: filepath.Join(dir, "trust.json"), policy: filepath.Join(dir, "policy.json"), auditKeys: map[string]string{}}
	var fleet []any
	for i, id := range auditNodes {
		ak, err := keyfile.Generate(fmt.Sprintf("e2e-audit-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Join(dir, fmt.Sprintf("audit-%d", i))
		if err := ak.Write(base); err != nil { // the .key 0600
			t.Fatal(err)
		}
		w.auditKeys[id] = base + ".key"
		fleet = append(fleet, map[string]any{"node_id": id, "status": "active",
			"public_key_b64url": base64.RawURLEncoding.EncodeToString(ak.Public().Key)})
	}
	now := time.Now().UTC().Format(time.RFC3339)
	src := []any{map[string]any{
		"source_type": "software_jwks", "issuer": wIssuer, "trust_domain": wDomain,
		"subject_exact": wSubject, "required_key_binding": "software",
	}}
	route := func(id, method, tmpl string, extra map[string]any) map[string]any {
		r := map[string]any{"route_id": id, "method": method, "path_template": tmpl,
			"freshness_class": "offline-ok", "allowed_sources": src}
		maps.Copy(r, extra)
		return r
	}
	sign := func(path string, doc map[string]any) {
		b, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		signed, err := bundle.Sign(b, bundle.NewSigningKey(bk), "local://e2e")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, signed, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	trust := map[string]any{
		"version": "trustplane-trust-material-v1", "kind": "trust_material", "sequence": 1, "issued_at": now,
		"issuers": []any{map[string]any{
			"issuer": wIssuer, "trust_domain": wDomain, "source_type": "software_jwks",
			"keys": []any{map[string]any{"kid": wKID, "alg": "EdDSA", "status": "active",
				"public_key_b64url": caller.PublicKeyB64()}},
		}},
	}
	if fleet != nil {
		trust["audit_nodes"] = fleet
	}
	sign(w.trust, trust)
	w.route = route
	policy := map[string]any{
		"version": "trustplane-bundle-v1", "kind": "policy_runtime_bundle", "trust_domain": wDomain,
		"sequence": 1, "issued_at": now,
		"apis": []any{map[string]any{"api_id": "orders", "audience": wAudience, "base_url": "http://orders.e2e"}},
		"route_groups": []any{map[string]any{"route_group_id": "orders", "api_id": "orders", "routes": []any{
			route("orders.create", "POST", "/v1/orders", nil),
			route("orders.get", "GET", "/v1/orders/{id}", nil),
			route("orders.gateway-create", "POST", "/v1/gw/orders", map[string]any{"body_hash_from_gateway": true}),
			route("orders.delete", "DELETE", "/v1/orders/{id}", nil),
		}}},
		"default_required_key_binding": "software", "default_freshness_class": "offline-ok",
	}
	if edit != nil {
		edit(w, policy)
	}
	sign(w.policy, policy)
	return w
}

// signed builds a signed request to rawURL for routeID, covering every
// header given plus the nonce, as the Python SDK's ProtectedClient does.
func (w *world) signed(t testing.TB, method, rawURL, routeID string, body []byte, hdrs ...string) *http.Request {
	t.Helper()
	return w.signedFor(t, wAudience, method, rawURL, routeID, body, hdrs...)
}

// signedFor is signed with a passport for audience aud.
func (w *world) signedFor(t testing.TB, aud, method, rawURL, routeID string, body []byte, hdrs ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(body) == 0 {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	var hs []transcript.Header
	for i := 0; i+1 < len(hdrs); i += 2 {
		hs = append(hs, transcript.Header{Name: hdrs[i], Value: hdrs[i+1]})
		req.Header.Add(hdrs[i], hdrs[i+1])
	}
	signAs(t, w.caller, signer.PassportOptions{Subject: wSubject, Audience: aud, KID: wKID}, req, body, hs, routeID)
	return req
}

// signAs signs req, whose body is body, as the SDKs do: a fresh passport
// from key and p (the world's issuer and trust domain, a five-minute
// lifetime from now, unless p says otherwise) and a proof over the request
// and the covered headers hs.
func signAs(t testing.TB, key *signer.Key, p signer.PassportOptions, req *http.Request, body []byte, hs []transcript.Header, routeID string) {
	t.Helper()
	p.Issuer, p.TrustDomain = cmp.Or(p.Issuer, wIssuer), cmp.Or(p.TrustDomain, wDomain)
	if p.IssuedAt.IsZero() {
		p.IssuedAt = time.Now()
	}
	p.TTL = cmp.Or(p.TTL, 5*time.Minute)
	tok, err := key.MintPassport(p)
	if err != nil {
		t.Fatal(err)
	}
	s, err := key.Sign(tok, &signer.Request{
		Method: req.Method, Scheme: req.URL.Scheme, Authority: req.URL.Host, Path: req.URL.EscapedPath(),
		RawQuery: req.URL.RawQuery, Body: body, Headers: hs, RouteID: routeID,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range s.Headers {
		req.Header.Set(h.Name, h.Value)
	}
}

// clone copies req with its body, to send the same bytes again.
func clone(t testing.TB, req *http.Request, body []byte) *http.Request {
	t.Helper()
	c := req.Clone(context.Background())
	if len(body) > 0 {
		c.Body, c.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	} else {
		c.Body, c.ContentLength = http.NoBody, 0
	}
	return c
}

// answer is a response, read whole.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) reason() string {
	var v struct{ Reason string }
	_ = json.Unmarshal(a.body, &v)
	return v.Reason
}

func send(t testing.TB, c *http.Client, req *http.Request) answer {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// seen is one request as the test upstream received it.
type seen struct {
	Method, RequestURI, Host string
	Header                   http.Header
	Body                     []byte
}

// upstream is a test API that records every request reaching it.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
}

func newUpstream(t testing.TB) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, seen{r.Method, r.RequestURI, r.Host, r.Header.Clone(), b})
		u.mu.Unlock()
		sum := sha256.Sum256(b)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok":true,"body_sha256":%q}`, hex.EncodeToString(sum[:]))
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) last(t testing.TB) seen {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("upstream received nothing")
	}
	return u.reqs[len(u.reqs)-1]
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
