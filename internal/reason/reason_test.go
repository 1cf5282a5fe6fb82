package reason

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tpcluster/tpcluster/internal/conformance"
)

func TestStatuses(t *testing.T) {
	for _, c := range RequestCodes() {
		s, ok := c.Status()
		if !ok || s < 200 || s > 599 {
			t.Errorf("%s: status %d, %v", c, s, ok)
		}
		if (s == 200) != (c == Allowed) {
			t.Errorf("%s: status %d; only allowed is 200", c, s)
		}
	}
	for _, c := range []Code{BundleApplied, BundleRejected} {
		if _, ok := c.Status(); ok {
			t.Errorf("%s: bundle event code has an HTTP status", c)
		}
		if c.HTTPStatus() != 500 {
			t.Errorf("%s: HTTPStatus = %d, want 500", c, c.HTTPStatus())
		}
	}
}

// TestSubjectTokens: every code ends an audit subject
// (trustplane.audit.<outcome>.<reason_code>, SPEC §9), so it must be a valid
// NATS subject token.
func TestSubjectTokens(t *testing.T) {
	for _, c := range All() {
		s := string(c)
		if s == "" || strings.ContainsAny(s, ". *>\t\r\n") {
			t.Errorf("%q is not a valid NATS subject token", s)
		}
		for _, r := range s {
			if !(r >= 'a' && r <= 'z' || r == '_') {
				t.Errorf("%q: want lower-case letters and underscores only", s)
				break
			}
		}
	}
}

// TestNamedInSpec: every code is written in SPEC.md (docs/SPEC.md, the
// repository's copy of the contract) or, for our later extensions,
// docs/SPEC-EXTENSIONS.md.
func TestNamedInSpec(t *testing.T) {
	root := conformance.ModuleRoot(t)
	spec, err := os.ReadFile(filepath.Join(root, "docs", "SPEC.md"))
	if err != nil {
		t.Fatalf("read the contract: %v", err)
	}
	text := string(spec)
	if ext, err := os.ReadFile(filepath.Join(root, "docs", "SPEC-EXTENSIONS.md")); err == nil {
		text += string(ext)
	}
	for _, c := range All() {
		word := regexp.MustCompile(`(^|[^a-z_])` + string(c) + `([^a-z_]|$)`)
		if !word.MatchString(text) {
			t.Errorf("%s is named in neither SPEC.md nor docs/SPEC-EXTENSIONS.md", c)
		}
	}
}

// TestNoCodeLiterals: outside this package, non-test code names codes only
// through the constants. An untyped string constant converts to Code
// implicitly, so a literal spelling a code is the one way around the closed
// set; this test finds it.
func TestNoCodeLiterals(t *testing.T) {
	root := conformance.ModuleRoot(t)
	codes := make(map[string]bool)
	for _, c := range All() {
		codes[string(c)] = true
	}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "data") {
				return filepath.SkipDir
			}
			if path == filepath.Join(root, "internal", "reason") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			if s, err := strconv.Unquote(lit.Value); err == nil && codes[s] {
				t.Errorf("%s: string literal %q spells a reason code; use the reason constant", fset.Position(lit.Pos()), s)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSpecCopy: docs/SPEC.md is the contract as ../shared/SPEC.md has it,
// byte for byte, when the shared copy sits beside the checkout (the
// developers' layout); a fresh clone has only docs/SPEC.md and passes. A
// contract amended in ../shared fails here until the copy follows it.
func TestSpecCopy(t *testing.T) {
	root := conformance.ModuleRoot(t)
	shared := filepath.Join(filepath.Dir(root), "shared", "SPEC.md")
	want, err := os.ReadFile(shared)
	if os.IsNotExist(err) {
		t.Logf("%s absent: nothing to compare docs/SPEC.md with", shared)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, "docs", "SPEC.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("docs/SPEC.md differs from %s: copy the amended contract", shared)
	}
}
