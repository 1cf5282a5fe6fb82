// Package conformance finds and loads the TrustPlane conformance vectors for
// tests (SPEC, opening section; STYLE §9).
//
// The vectors live in ../shared/trustplane-conformance-v1/ relative to the
// module root (the directory holding go.mod). A test that needs them fails,
// never skips, when they are missing: a silently skipped conformance test
// would claim compatibility nobody checked. Each manifest path is resolved by
// its base name in that directory, as SPEC says.
//
// The package is test support: it imports only the standard library and
// package testing, and nothing outside tests should import it.
package conformance

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// DirName is the vector directory's name beside the module root.
const DirName = "trustplane-conformance-v1"

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

// Dir returns the vector directory, found by walking up from the working
// directory to the module root and then to ../shared/trustplane-conformance-v1.
// It fails t when the root or the directory's manifest.json is missing.
func Dir(t testing.TB) string {
	t.Helper()
	vdir := filepath.Join(filepath.Dir(ModuleRoot(t)), "shared", DirName)
	if _, err := os.Stat(filepath.Join(vdir, "manifest.json")); err != nil {
		t.Fatalf("conformance: vectors missing (want %s/manifest.json beside the module root): %v", vdir, err)
	}
	return vdir
}

// ModuleRoot returns the module root, the nearest directory at or above the
// working directory that holds go.mod; ../shared sits beside it. It fails t
// when there is none.
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

// Read returns the bytes of the vector file name (a base name) in [Dir],
// failing t when it is absent.
func Read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Dir(t), filepath.Base(name)))
	if err != nil {
		t.Fatalf("conformance: %v", err)
	}
	return b
}

// Load decodes the vector file name (a base name) in [Dir] into v, failing
// t when it is absent or not JSON of v's shape.
func Load(t testing.TB, name string, v any) {
	t.Helper()
	if err := json.Unmarshal(Read(t, name), v); err != nil {
		t.Fatalf("conformance: decode %s: %v", name, err)
	}
}

// Manifest loads manifest.json. It fails t when the manifest is missing,
// malformed, lists no vectors, or lists a file that is absent.
func Manifest(t testing.TB) ManifestFile {
	t.Helper()
	var m ManifestFile
	Load(t, "manifest.json", &m)
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
