package loadgen

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"time"

	"github.com/tpcluster/tpcluster/internal/atomicfile"
	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/demo"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/signer"
)

// WorldFile is the name of the file Prepare writes beside the keys and
// bundles: what a caller needs to sign for the world's routes.
const WorldFile = "world.json"

// worldVersion tags world.json, so a file from another tool is refused.
const worldVersion = "tpload-world-v1"

// Route is a route the generator signs for.
type Route struct {
	ID string `json:"route_id"`
	// Path is the request path. For the GET route it is a prefix: request
	// n goes to Path + n, so every GET has its own target.
	Path string `json:"path"`
}

// World is what the generator needs to sign requests a verifier accepts:
// the passport claims, the caller key and two routes.
type World struct {
	Issuer      string `json:"issuer"`
	Subject     string `json:"subject"`
	Audience    string `json:"audience"`
	TrustDomain string `json:"trust_domain"`
	KID         string `json:"kid"`
	// Get is a GET route with a path parameter, Post a POST route. In a
	// prepared world Post sets body_hash_from_gateway, so POSTs also pass
	// nginx auth_request, which forwards no body to the check; proxy mode
	// still hashes and binds the body (SPEC §4).
	Get  Route `json:"get"`
	Post Route `json:"post"`

	key *signer.Key
}

// worldDoc is world.json.
type worldDoc struct {
	Version string `json:"version"`
	World
	CallerKey       string `json:"caller_key"`
	BundlePublicKey string `json:"bundle_public_key"`
	TrustMaterial   string `json:"trust_material"`
	PolicyBundle    string `json:"policy_bundle"`
}

// LoadWorld reads the world in dir: world.json and its caller key if
// Prepare wrote it, else the files of demo.Prepare (verifierd --demo) with
// the demo's claims and routes. Its POST route lacks
// body_hash_from_gateway, so POSTs through nginx are denied there.
func LoadWorld(dir string) (*World, error) {
	b, err := os.ReadFile(filepath.Join(dir, WorldFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		w := &World{
			Issuer: demo.Issuer, Subject: demo.Subject, Audience: demo.Audience,
			TrustDomain: demo.TrustDomain, KID: demo.CallerKID,
			Get:  Route{ID: "orders.get", Path: "/v1/orders/"},
			Post: Route{ID: "orders.create", Path: "/v1/orders"},
		}
		return w, w.readKey(filepath.Join(dir, "caller.key"))
	case err != nil:
		return nil, fmt.Errorf("loadgen: world: %w", err)
	}
	var doc worldDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("loadgen: world %s: %w", filepath.Join(dir, WorldFile), err)
	}
	if doc.Version != worldVersion {
		return nil, fmt.Errorf("loadgen: world %s: version %q, want %q", filepath.Join(dir, WorldFile), doc.Version, worldVersion)
	}
	w := doc.World
	return &w, w.readKey(filepath.Join(dir, doc.CallerKey))
}

func (w *World) readKey(path string) error {
	k, err := keyfile.ReadPrivate(path)
	if err != nil {
		return fmt.Errorf("loadgen: caller key: %w", err)
	}
	if w.key, err = signer.NewKey(k.Seed()); err != nil {
		return fmt.Errorf("loadgen: caller key: %w", err)
	}
	return nil
}

// PreparedFiles are the files of a prepared world, as verifierd's flags
// take them.
type PreparedFiles struct {
	BundlePublicKey, TrustMaterial, PolicyBundle string
}

// Prepare writes a world under dir: a caller key and a bundle-signing key
// (reused if present, never overwritten), a signed trust material and
// policy bundle a verifierd loads with --trust-material, --policy-bundle
// and --bundle-public-key, and world.json. Keys are generated here, never
// committed (SPEC §10.1).
func Prepare(dir string) (*PreparedFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("loadgen: prepare: %w", err)
	}
	w := World{
		Issuer: "https://issuer.tpload.test", Subject: "spiffe://tpload.local/workload/load",
		Audience: "orders-api", TrustDomain: "tpload.local", KID: "tpload-caller-1",
		Get:  Route{ID: "orders.get", Path: "/v1/orders/"},
		Post: Route{ID: "orders.create", Path: "/v1/orders"},
	}
	caller, err := keyfile.LoadOrCreate(filepath.Join(dir, "caller"), w.KID)
	if err != nil {
		return nil, fmt.Errorf("loadgen: prepare: %w", err)
	}
	signing, err := keyfile.LoadOrCreate(filepath.Join(dir, "bundle"), "tpload-bundle-1")
	if err != nil {
		return nil, fmt.Errorf("loadgen: prepare: %w", err)
	}
	doc := worldDoc{
		Version: worldVersion, World: w, CallerKey: "caller.key", BundlePublicKey: "bundle.pub",
		TrustMaterial: "trust-material.json", PolicyBundle: "policy-bundle.json",
	}
	now := time.Now().UTC().Truncate(time.Second)
	seq := now.Unix() // grows across runs: a re-prepared world never looks like a rollback
	sk := bundle.NewSigningKey(signing)
	files := []struct {
		name string
		doc  map[string]any
	}{
		{doc.TrustMaterial, w.trustMaterial(caller.Public(), seq, now)},
		{doc.PolicyBundle, w.policy(seq, now)},
	}
	for _, f := range files {
		raw, err := json.Marshal(f.doc)
		if err != nil {
			return nil, fmt.Errorf("loadgen: prepare %s: %w", f.name, err)
		}
		signed, err := bundle.Sign(raw, sk, "local://tpload")
		if err != nil {
			return nil, fmt.Errorf("loadgen: prepare %s: %w", f.name, err)
		}
		if err := atomicfile.Write(filepath.Join(dir, f.name), signed, 0o644); err != nil {
			return nil, fmt.Errorf("loadgen: %w", err)
		}
	}
	wd, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("loadgen: prepare %s: %w", WorldFile, err)
	}
	if err := atomicfile.Write(filepath.Join(dir, WorldFile), append(wd, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	return &PreparedFiles{
		BundlePublicKey: filepath.Join(dir, doc.BundlePublicKey),
		TrustMaterial:   filepath.Join(dir, doc.TrustMaterial),
		PolicyBundle:    filepath.Join(dir, doc.PolicyBundle),
	}, nil
}

func (w *World) trustMaterial(caller *keyfile.PublicKey, seq int64, now time.Time) map[string]any {
	return map[string]any{
		"version": "trustplane-trust-material-v1", "kind": "trust_material",
		"sequence": seq, "issued_at": now.Format(time.RFC3339),
		"issuers": []any{map[string]any{
			"issuer": w.Issuer, "trust_domain": w.TrustDomain, "source_type": "software_jwks",
			"keys": []any{map[string]any{
				"kid": caller.KID, "alg": "EdDSA", "status": "active",
				"public_key_b64url": b64(caller.Key),
			}},
		}},
	}
}

func (w *World) policy(seq int64, now time.Time) map[string]any {
	src := []any{map[string]any{
		"source_type": "software_jwks", "issuer": w.Issuer, "trust_domain": w.TrustDomain,
		"subject_exact": w.Subject, "required_key_binding": "software",
	}}
	route := func(r Route, method, tmpl string, extra map[string]any) map[string]any {
		m := map[string]any{"route_id": r.ID, "method": method, "path_template": tmpl,
			"freshness_class": "offline-ok", "allowed_sources": src}
		maps.Copy(m, extra)
		return m
	}
	return map[string]any{
		"version": "trustplane-bundle-v1", "kind": "policy_runtime_bundle",
		"trust_domain": w.TrustDomain, "sequence": seq, "issued_at": now.Format(time.RFC3339),
		"apis": []any{map[string]any{"api_id": "orders", "audience": w.Audience, "base_url": "http://" + Authority}},
		"route_groups": []any{map[string]any{"route_group_id": "orders", "api_id": "orders", "routes": []any{
			route(w.Get, "GET", w.Get.Path+"{id}", nil),
			route(w.Post, "POST", w.Post.Path, map[string]any{"body_hash_from_gateway": true}),
		}}},
		"default_required_key_binding": "software", "default_freshness_class": "offline-ok",
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
