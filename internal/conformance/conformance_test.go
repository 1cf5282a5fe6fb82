package conformance

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// notVectors are the files of the set that no manifest entry lists.
var notVectors = []string{"manifest.json", "README.md", "PROVENANCE.md", "LICENSE", DerivedName}

// TestEveryVectorRuns: every manifest entry's contracts have a runner
// package whose tests ask for that contract's vectors, and every file of
// the set is a manifest entry or one of notVectors. An entry nobody runs,
// or a file nobody lists, fails here rather than going unnoticed.
func TestEveryVectorRuns(t *testing.T) {
	m := Manifest(t)
	runners := Runners()
	listed := map[string]bool{}
	inManifest := map[string]bool{}
	for _, v := range m.Vectors {
		listed[v.Name()] = true
		for _, c := range v.Contracts {
			inManifest[c] = true
			pkg, ok := runners[c]
			if !ok {
				t.Errorf("manifest vector %s: contract %s has no runner in Runners", v.ID, c)
				continue
			}
			if !asksFor(t, filepath.Join(ModuleRoot(t), pkg), c) {
				t.Errorf("manifest vector %s: no test in %s calls conformance.Run or conformance.Vectors with %q", v.ID, pkg, c)
			}
		}
	}
	for c, pkg := range runners {
		if !inManifest[c] {
			t.Errorf("Runners names contract %s (run by %s), which the manifest does not list", c, pkg)
		}
	}
	ents, err := os.ReadDir(Dir(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !listed[e.Name()] && !slices.Contains(notVectors, e.Name()) {
			t.Errorf("%s is in the vector set but no manifest entry lists it", e.Name())
		}
	}
	for _, name := range notVectors {
		if _, err := os.Stat(filepath.Join(Dir(t), name)); err != nil {
			t.Errorf("vector set: %v", err)
		}
	}
}

// asksFor reports whether a _test.go file in dir calls conformance.Run or
// conformance.Vectors with contract as a literal argument.
func asksFor(t *testing.T, dir, contract string) bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("runner %s: no test files (%v)", dir, err)
	}
	want := strconv.Quote(contract)
	found := false
	for _, name := range files {
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) < 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Vectors" && sel.Sel.Name != "Run") {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "conformance" {
				return true
			}
			if lit, ok := call.Args[1].(*ast.BasicLit); ok && lit.Value == want {
				found = true
			}
			return true
		})
	}
	return found
}

// TestSharedCopy checks the testdata copy against the set it was copied
// from, ../shared/trustplane-conformance-v1 beside the module root, when
// that exists: every file byte-identical, nothing missing, nothing added
// but LICENSE (the Apache-2.0 text the set is published under). Without
// ../shared (a fresh clone) there is nothing to compare and it passes.
func TestSharedCopy(t *testing.T) {
	shared := filepath.Join(filepath.Dir(ModuleRoot(t)), "shared", DirName)
	ents, err := os.ReadDir(shared)
	if os.IsNotExist(err) {
		t.Logf("%s absent: nothing to compare the testdata copy with", shared)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	ours := Dir(t)
	names := map[string]bool{"LICENSE": true}
	for _, e := range ents {
		names[e.Name()] = true
		want, err := os.ReadFile(filepath.Join(shared, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(ours, e.Name()))
		if err != nil {
			t.Errorf("testdata copy: %v", err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("testdata %s differs from %s:\n--- testdata\n%s\n--- shared\n%s", e.Name(), shared, got, want)
		}
	}
	copied, err := os.ReadDir(ours)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range copied {
		if !names[e.Name()] {
			t.Errorf("testdata holds %s, which %s does not", e.Name(), shared)
		}
	}
	if !strings.Contains(readFile(t, filepath.Join(ours, "LICENSE")), "Apache License") {
		t.Error("testdata LICENSE is not the Apache License text")
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
