// Package demo is verifierd's first run (--demo): it writes a demo caller
// key, a bundle-signing key and a signed trust material and policy bundle
// under a directory, runs a small upstream that echoes what reached it, and
// sends a signed request and its replay through a verifier, printing both
// answers and the commands a user can copy to try their own.
//
// Key files are generated here, at setup, never committed (SPEC §10.1).
package demo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/tpcluster/tpcluster/backendjwt"
	"github.com/tpcluster/tpcluster/internal/atomicfile"
	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
)

// The demo world.
const (
	Issuer      = "https://issuer.demo.tpcluster"
	TrustDomain = "demo.local"
	Audience    = "orders-api"
	Subject     = "spiffe://demo.local/workload/orders-client"
	CallerKID   = "demo-caller-1"
	// AssertionIssuer is the demo fleet's backend assertion issuer, and
	// BackendAudience the demo upstream's audience (docs/BACKEND-JWT.md).
	AssertionIssuer = "https://verifiers.demo.tpcluster"
	BackendAudience = "orders-backend"
)

// Files are the demo's files.
type Files struct {
	Dir             string
	CallerKey       string // caller.key, 0600
	BundleKey       string // bundle.key, 0600
	BundlePublicKey string // bundle.pub
	TrustMaterial   string // trust-material.json, signed
	PolicyBundle    string // policy-bundle.json, signed
	// AuditKeys are the audit private key files (0600) of the node ids
	// given to Prepare, by node id; the trust material lists their public
	// keys in audit_nodes (docs/AUDIT.md).
	AuditKeys map[string]string
	// AssertionKeys are the backend assertion private key files (0600) of
	// the same nodes, by node id, and AssertionPublicKeys the public key
	// files of all of them: every node lists them all, so every node serves
	// the same JWKS (docs/BACKEND-JWT.md).
	AssertionKeys       map[string]string
	AssertionPublicKeys []string
}

// Prepare writes the demo files under dir, reusing keys from an earlier
// run, and signs fresh bundles with a sequence that grows across runs. Each
// of auditNodes gets an audit key, listed as an active fleet member.
func Prepare(dir string, auditNodes ...string) (*Files, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	f := &Files{
		Dir:             dir,
		CallerKey:       filepath.Join(dir, "caller.key"),
		BundleKey:       filepath.Join(dir, "bundle.key"),
		BundlePublicKey: filepath.Join(dir, "bundle.pub"),
		TrustMaterial:   filepath.Join(dir, "trust-material.json"),
		PolicyBundle:    filepath.Join(dir, "policy-bundle.json"),
		AuditKeys:       map[string]string{},
		AssertionKeys:   map[string]string{},
	}
	caller, err := keyfile.LoadOrCreate(filepath.Join(dir, "caller"), CallerKID)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	signing, err := keyfile.LoadOrCreate(filepath.Join(dir, "bundle"), "demo-bundle-1")
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	var fleet, assertionKeys []any
	for _, node := range auditNodes {
		base := filepath.Join(dir, "audit-"+fileSafe(node))
		k, err := keyfile.LoadOrCreate(base, "audit-"+fileSafe(node))
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		f.AuditKeys[node] = base + ".key"
		fleet = append(fleet, map[string]any{"node_id": node, "status": "active", "public_key_b64url": b64(k.Public().Key)})
		abase := filepath.Join(dir, "assertion-"+fileSafe(node))
		ak, err := keyfile.LoadOrCreate(abase, "assertion-"+fileSafe(node))
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		// Listed active in the signed trust material: the JWKS every node
		// serves, and the keys that may sign (docs/BACKEND-JWT.md).
		assertionKeys = append(assertionKeys, map[string]any{"kid": ak.KID(), "status": "active", "public_key_b64url": b64(ak.Public().Key)})
		f.AssertionKeys[node] = abase + ".key"
		f.AssertionPublicKeys = append(f.AssertionPublicKeys, abase+".pub")
	}
	now := time.Now().UTC().Truncate(time.Second)
	seq := now.Unix() // grows across runs: a restart never looks like a rollback
	sk := bundle.NewSigningKey(signing)
	trust, err := bundle.Sign(trustMaterial(caller.Public(), fleet, assertionKeys, seq, now), sk, "local://demo.bundlepub")
	if err != nil {
		return nil, fmt.Errorf("demo: sign trust material: %w", err)
	}
	// orders.get asks for a backend assertion when the nodes have keys to
	// mint one; without them it would deny every request.
	pol, err := bundle.Sign(policy(seq, now, len(auditNodes) > 0), sk, "local://demo.bundlepub")
	if err != nil {
		return nil, fmt.Errorf("demo: sign policy bundle: %w", err)
	}
	if err := atomicfile.Write(f.TrustMaterial, trust, 0o644); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	if err := atomicfile.Write(f.PolicyBundle, pol, 0o644); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	return f, nil
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// fileSafe maps a node id to a file name part: characters other than
// letters, digits, '.', '-' and '_' become '_'.
func fileSafe(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

func trustMaterial(caller *keyfile.PublicKey, fleet, assertionKeys []any, seq int64, now time.Time) []byte {
	doc := map[string]any{
		"version": "trustplane-trust-material-v1", "kind": "trust_material",
		"sequence": seq, "issued_at": rfc3339(now),
		"issuers": []any{map[string]any{
			"issuer": Issuer, "trust_domain": TrustDomain, "source_type": "software_jwks",
			"keys": []any{map[string]any{
				"kid": caller.KID, "alg": "EdDSA", "status": "active",
				"public_key_b64url": b64(caller.Key),
			}},
		}},
	}
	if len(fleet) > 0 {
		doc["audit_nodes"] = fleet
	}
	if len(assertionKeys) > 0 {
		doc["assertion_keys"] = assertionKeys
	}
	b, _ := json.Marshal(doc)
	return b
}

func policy(seq int64, now time.Time, assertion bool) []byte {
	src := []any{map[string]any{
		"source_type": "software_jwks", "issuer": Issuer, "trust_domain": TrustDomain,
		"subject_prefix": "spiffe://demo.local/workload/", "required_key_binding": "software",
	}}
	route := func(id, method, tmpl string) map[string]any {
		return map[string]any{
			"route_id": id, "method": method, "path_template": tmpl,
			"freshness_class": "offline-ok", "allowed_sources": src,
		}
	}
	get := route("orders.get", "GET", "/v1/orders/{id}")
	if assertion {
		get["backend_assertion"] = map[string]any{"audience": BackendAudience, "ttl_seconds": 30}
	}
	b, _ := json.Marshal(map[string]any{
		"version": "trustplane-bundle-v1", "kind": "policy_runtime_bundle",
		"trust_domain": TrustDomain, "sequence": seq, "issued_at": rfc3339(now),
		"apis": []any{map[string]any{"api_id": "orders-api", "audience": Audience, "base_url": "http://127.0.0.1:8081"}},
		"route_groups": []any{map[string]any{
			"route_group_id": "orders", "api_id": "orders-api",
			"routes": []any{
				route("orders.create", "POST", "/v1/orders"),
				get,
				route("orders.search", "GET", "/v1/orders"),
			},
		}},
		"default_required_key_binding": "software",
		"default_freshness_class":      "offline-ok",
	})
	return b
}

// Upstream is the demo API: it answers every request with JSON describing
// what reached it, so a user sees the context headers verifierd added.
type Upstream struct {
	URL string
	srv *http.Server
	// verifier checks X-TrustPlane-Assertion once VerifyAssertions set it.
	verifier atomic.Pointer[backendjwt.Verifier]
}

// VerifyAssertions makes the upstream verify every X-TrustPlane-Assertion
// it receives against the fleet's JWKS and say in its echo whether it
// verified, and the claims.
func (u *Upstream) VerifyAssertions(jwksURL, issuer, audience string) error {
	v, err := backendjwt.New(backendjwt.Config{JWKSURL: jwksURL, Issuer: issuer, Audience: audience})
	if err != nil {
		return fmt.Errorf("demo upstream: %w", err)
	}
	u.verifier.Store(v)
	return nil
}

// StartUpstream listens on addr (loopback) and serves until Close.
func StartUpstream(ctx context.Context, addr string) (*Upstream, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo upstream: %w", err)
	}
	u := &Upstream{URL: "http://" + ln.Addr().String()}
	u.srv = &http.Server{Handler: http.HandlerFunc(u.echo), ReadHeaderTimeout: 5 * time.Second}
	go u.srv.Serve(ln)
	return u, nil
}

// Close stops the upstream.
func (u *Upstream) Close() error { return u.srv.Close() }

func (u *Upstream) echo(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	sum := sha256.Sum256(body)
	ctxHeaders := map[string]string{}
	for _, k := range []string{"X-Trustplane-Subject", "X-Trustplane-Issuer", "X-Trustplane-Trust-Domain",
		"X-Trustplane-Jti", "X-Trustplane-Route-Id", "X-Trustplane-Key-Binding", "X-Request-Id"} {
		if v := r.Header.Get(k); v != "" {
			ctxHeaders[k] = v
		}
	}
	reply := map[string]any{
		"upstream": "tpcluster demo", "method": r.Method, "target": r.RequestURI,
		"body_sha256": hex.EncodeToString(sum[:]), "headers": ctxHeaders,
	}
	if a := u.assertion(r); a != nil {
		reply["backend_assertion"] = a
	}
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(reply)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(buf.Bytes())
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// assertion is the echo's backend_assertion member: whether the request's
// X-TrustPlane-Assertion verified, and its claims or why not. Nil when the
// request has none and the upstream verifies none.
func (u *Upstream) assertion(r *http.Request) map[string]any {
	v := u.verifier.Load()
	present := r.Header.Get(backendjwt.Header) != ""
	if v == nil {
		if present {
			return map[string]any{"present": true, "verified": false, "error": "this upstream has no JWKS to verify with"}
		}
		return nil
	}
	c, err := v.VerifyRequest(r, backendjwt.RequestOptions{})
	if err != nil {
		return map[string]any{"present": present, "verified": false, "error": err.Error()}
	}
	return map[string]any{"present": true, "verified": true, "claims": c}
}
