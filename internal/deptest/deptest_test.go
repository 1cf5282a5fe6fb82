package deptest

import (
	"slices"
	"strings"
	"testing"
)

const mod = "example.com/m"

// graph is a small module: a pure package p that reaches net/http through
// the module's package q, an adapter a that imports a client library which
// itself imports net/http, and test support ts.
func graph() []Package {
	return []Package{
		{ImportPath: mod + "/p", Imports: []string{mod + "/q", "fmt"}, Deps: []string{"fmt", "net/http", "net/http/internal", mod + "/q"}},
		{ImportPath: mod + "/q", Imports: []string{"net/http"}, Deps: []string{"net/http", "net/http/internal"}},
		{ImportPath: mod + "/a", Imports: []string{"example.org/client", mod + "/ts"}, Deps: []string{"example.org/client", "net/http", "net/http/internal", mod + "/ts", "testing"}},
		{ImportPath: mod + "/ts", Imports: []string{"testing"}, Deps: []string{"testing"}},
		{ImportPath: "example.org/client", DepOnly: true, Imports: []string{"net/http"}, Deps: []string{"net/http", "net/http/internal"}},
		{ImportPath: "net/http", Standard: true, DepOnly: true, Imports: []string{"net/http/internal"}},
		{ImportPath: "net/http/internal", Standard: true, DepOnly: true},
		{ImportPath: "fmt", Standard: true, DepOnly: true},
		{ImportPath: "testing", Standard: true, DepOnly: true},
	}
}

var noHTTP = Rule{Path: "net/http", Why: "HTTP is the proxy's job"}

func TestCheck(t *testing.T) {
	tests := []struct {
		name  string
		table map[string]Layer
		want  []string // each violation's String, in order
	}{
		{
			name: "test_only_import",
			table: map[string]Layer{
				mod + "/p":  {Pure: true, Allow: []string{mod + "/q"}},
				mod + "/q":  {},
				mod + "/a":  {Deny: []Rule{noHTTP}},
				mod + "/ts": {TestOnly: true, Allow: []string{}},
			},
			// a is an adapter: the client's net/http is not its own import.
			want: []string{"a imports ts; rule: ts is test support; only _test.go files and other test support may import it"},
		},
		{
			name: "pure_transitive_deny",
			table: map[string]Layer{
				mod + "/p":  {Pure: true, Deny: []Rule{noHTTP}},
				mod + "/q":  {},
				mod + "/a":  {TestOnly: true},
				mod + "/ts": {TestOnly: true},
			},
			// One violation for net/http, none for its subpackage, with
			// the chain that reaches it.
			want: []string{"p imports net/http (via p -> q -> net/http); rule: must not import net/http, transitively (a pure package): HTTP is the proxy's job"},
		},
		{
			name: "pure_allow_covers_what_it_reaches",
			table: map[string]Layer{
				mod + "/p":  {Pure: true, Allow: []string{mod + "/q"}},
				mod + "/q":  {},
				mod + "/a":  {TestOnly: true, Allow: []string{}},
				mod + "/ts": {TestOnly: true},
			},
			want: []string{
				"a imports example.org/client; rule: may import only the standard library",
				"a imports ts; rule: may import only the standard library",
			},
		},
		{
			name: "direct_allow",
			table: map[string]Layer{
				mod + "/p":  {Pure: true, Allow: []string{}},
				mod + "/q":  {},
				mod + "/a":  {TestOnly: true},
				mod + "/ts": {TestOnly: true},
			},
			want: []string{"p imports q; rule: may import only the standard library, transitively (a pure package)"},
		},
		{
			name: "missing_row",
			table: map[string]Layer{
				mod + "/p":  {},
				mod + "/a":  {TestOnly: true},
				mod + "/ts": {TestOnly: true},
			},
			want: []string{"q: no row in the layer table (deps_test.go in the module root): add one saying what it may import"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, v := range Check(mod, graph(), tt.table) {
				got = append(got, v.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Check(%s) =\n\t%s\nwant\n\t%s", tt.name, strings.Join(got, "\n\t"), strings.Join(tt.want, "\n\t"))
			}
		})
	}
}

// TestList runs go list on this module's deptest package: it must name
// the package itself and, with -deps, the standard library it imports.
func TestList(t *testing.T) {
	pkgs, err := List(".", ".")
	if err != nil {
		t.Fatal(err)
	}
	var self, std bool
	for _, p := range pkgs {
		if strings.HasSuffix(p.ImportPath, "/internal/deptest") && !p.DepOnly && slices.Contains(p.Imports, "os/exec") {
			self = true
		}
		if p.ImportPath == "os/exec" && p.Standard && p.DepOnly {
			std = true
		}
	}
	if !self || !std {
		t.Errorf("List(.) found deptest: %t, os/exec as a standard dependency: %t; want both", self, std)
	}
}
