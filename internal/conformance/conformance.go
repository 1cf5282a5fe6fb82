// Package conformance finds and loads the TrustPlane conformance vectors for
// tests (SPEC, opening section; STYLE §9).
//
// The vectors are a copy, in this package's testdata/trustplane-conformance-v1/,
// of the public Apache-2.0 set (PROVENANCE.md and LICENSE there), so a fresh
// clone tests with nothing beside it; TestSharedCopy checks the copy is
// byte-identical to ../shared/trustplane-conformance-v1/ when that exists.
// Tests reach vectors only through the manifest: Vectors(t, contract) lists
// a contract's entries, Vector.Load reads one, Run does both for a test, each path resolved by its base
// name, as SPEC says. Runners names the package that runs each contract, and
// TestEveryVectorRuns fails when a manifest entry has no runner or a file
// no manifest entry. A missing vector fails, never skips: a silently skipped
// conformance test would claim compatibility nobody checked.
//
// The package is test support: it imports only the standard library and
// package testing, and only tests import it (the module's layer table
// enforces that).
package conformance

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// DirName is the vector set's directory name, in testdata and in ../shared.
const DirName = "trustplane-conformance-v1"

// DerivedName is the full signed-request example that is not in the
// manifest (PROVENANCE.md: generated with the public SDK, not upstream);
// SPEC's opening section gives it its own test.
const DerivedName = "DERIVED-software-signed-request.json"

// Runners returns, for each contract the manifest lists, the package (by
// its path in the module) whose tests run that contract's vectors. A
// contract without a runner, or a runner whose tests never ask for its
// contract's vectors, fails TestEveryVectorRuns.
func Runners() map[string]string {
	return map[string]string{
		"transcript-v1":      "internal/transcript",
		"body-sha256":        "internal/transcript",
		"broker-ipc-v1":      "internal/transcript",
		"passport-v1":        "internal/passport",
		"signer-taxonomy-v1": "internal/signerclass",
		"bundle-v1":          "internal/bundle",
	}
}

// ManifestFile is manifest.json, the entry point of the vector set.
type ManifestFile struct {
	Version      string   `json:"version"`
	SuiteVersion string   `json:"suite_version"`
	Updated      string   `json:"updated"`
	Notes        []string `json:"notes"`
	Vectors      []Vector `json:"vectors"`
}

// Vector is one manifest entry.
type Vector struct {
	ID        string   `json:"id"`
	Contracts []string `json:"contracts"`
	// Path is the upstream path (testdata/conformance/v1/NAME.json); only
	// its base name is used.
	Path string `json:"path"`
}

// Name returns the vector file's base name.
func (v Vector) Name() string { return filepath.Base(filepath.FromSlash(v.Path)) }

// Load decodes the vector's file into dst, failing t when it is absent or
// not JSON of dst's shape.
func (v Vector) Load(t testing.TB, dst any) {
	t.Helper()
	load(t, v.Name(), dst)
}

// Dir returns the vector directory in this package's testdata, found from
// the module root. It fails t when the directory's manifest.json is missing.
func Dir(t testing.TB) string {
	t.Helper()
	vdir := filepath.Join(ModuleRoot(t), "internal", "conformance", "testdata", DirName)
	if _, err := os.Stat(filepath.Join(vdir, "manifest.json")); err != nil {
		t.Fatalf("conformance: vectors missing (want %s/manifest.json): %v", vdir, err)
	}
	return vdir
}

// ModuleRoot returns the module root, the nearest directory at or above the
// working directory that holds go.mod. It fails t when there is none.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("conformance: working directory: %v", err)
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("conformance: no go.mod above %s", wd)
		}
		dir = parent
	}
}

// Derived is DerivedName: a passport and a signed request made with the
// public Python SDK from a fixed seed, and what a verifier must rebuild.
type Derived struct {
	IssuerKey struct {
		Issuer          string `json:"issuer"`
		KID             string `json:"kid"`
		PublicKeyB64URL string `json:"public_key_b64url"`
	} `json:"issuer_key"`
	SeedHex       string `json:"test_private_key_seed_hex"`
	PassportToken string `json:"passport_token"`
	HTTPRequest   struct {
		Method   string            `json:"method"`
		URL      string            `json:"url"`
		BodyUTF8 string            `json:"body_utf8"`
		Headers  map[string]string `json:"headers"`
	} `json:"http_request"`
	Expected struct {
		RouteID          string   `json:"route_id"`
		AllowList        []string `json:"header_allow_list"`
		Lines            []string `json:"canonical_lines"`
		TranscriptSHA256 string   `json:"transcript_sha256"`
		Proof            string   `json:"proof_b64url"`
	} `json:"expected"`
}

// LoadDerived reads DerivedName, failing t when it is absent or malformed.
func LoadDerived(t testing.TB) *Derived {
	t.Helper()
	var d Derived
	load(t, DerivedName, &d)
	return &d
}

func load(t testing.TB, name string, dst any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Dir(t), name))
	if err != nil {
		t.Fatalf("conformance: %v", err)
	}
	if err := json.Unmarshal(b, dst); err != nil {
		t.Fatalf("conformance: decode %s: %v", name, err)
	}
}

// Manifest loads manifest.json. It fails t when the manifest is missing,
// malformed, lists no vectors, or lists a file that is absent.
func Manifest(t testing.TB) ManifestFile {
	t.Helper()
	var m ManifestFile
	load(t, "manifest.json", &m)
	if len(m.Vectors) == 0 {
		t.Fatalf("conformance: manifest.json lists no vectors")
	}
	dir := Dir(t)
	for _, v := range m.Vectors {
		if _, err := os.Stat(filepath.Join(dir, v.Name())); err != nil {
			t.Fatalf("conformance: manifest vector %s: %v", v.ID, err)
		}
	}
	return m
}

// Run runs f on each of contract's vectors (see Vectors), decoded into a T,
// as a subtest named by the vector's id.
func Run[T any](t *testing.T, contract string, f func(t *testing.T, v T)) {
	t.Helper()
	for _, vec := range Vectors(t, contract) {
		t.Run(vec.ID, func(t *testing.T) {
			var v T
			vec.Load(t, &v)
			f(t, v)
		})
	}
}

// Vectors returns the manifest vectors that list contract, failing t when
// there are none (a renamed contract must not pass by testing nothing).
func Vectors(t testing.TB, contract string) []Vector {
	t.Helper()
	var out []Vector
	for _, v := range Manifest(t).Vectors {
		if slices.Contains(v.Contracts, contract) {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		t.Fatalf("conformance: manifest lists no %s vectors", contract)
	}
	return out
}
