package bundle

import (
	"fmt"
	"strings"
	"testing"
)

// policyWithRoutes builds an unsigned policy with one route per
// "METHOD template" entry, route ids r0, r1, ...
func policyWithRoutes(t testing.TB, routes ...string) ([]byte, error) {
	t.Helper()
	var rs []string
	for i, r := range routes {
		method, tmpl, _ := strings.Cut(r, " ")
		rs = append(rs, fmt.Sprintf(`{"route_id":"r%d","method":%q,"path_template":%q,"allowed_sources":[{"source_type":"software_jwks","issuer":"i","trust_domain":"d","subject_exact":"s"}]}`, i, method, tmpl))
	}
	doc := `{"version":"trustplane-bundle-v1","kind":"policy_runtime_bundle","trust_domain":"d",
	  "apis":[{"api_id":"a","audience":"aud"}],
	  "route_groups":[{"route_group_id":"g","api_id":"a","routes":[` + strings.Join(rs, ",") + `]}]}`
	_, err := ParsePolicy([]byte(doc), Options{AllowUnsigned: true})
	return []byte(doc), err
}

func TestResolve(t *testing.T) {
	doc, err := policyWithRoutes(t,
		"GET /v1/orders/search",        // r0
		"GET /v1/orders/{id}",          // r1
		"GET /v1/orders/{id}/items",    // r2
		"GET /v1/orders/*",             // r3
		"GET /v1/*",                    // r4
		"POST /v1/orders",              // r5
		"GET /",                        // r6
		"GET /v1/users/{uid}/keys/{k}", // r7
		"GET /v1/trailing/",            // r8
		"M-SEARCH /x",                  // r9
		"GET /v2/b/{c}/w",              // r10
		"GET /v2/{a}/{d}/z",            // r11
	)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ParsePolicy(doc, Options{AllowUnsigned: true})
	tests := []struct{ method, path, want string }{
		{"GET", "/v1/orders/search", "r0"},    // literal beats {id}
		{"GET", "/v1/orders/123", "r1"},       // {id}
		{"GET", "/v1/orders/123/items", "r2"}, // pattern beats prefix
		{"GET", "/v1/orders/123/other", "r3"}, // prefix, deeper path
		{"GET", "/v1/orders/a/b/c", "r3"},
		{"GET", "/v1/orders/", "r4"}, // {id} needs a non-empty segment; /v1/orders/* needs more than its prefix
		{"GET", "/v1/orders", "r4"},  // not /v1/orders/*
		{"GET", "/v1/other", "r4"},   // shorter prefix
		{"GET", "/v1/", ""},
		{"GET", "/v1", ""},
		{"POST", "/v1/orders", "r5"},
		{"POST", "/v1/orders/1", ""},
		{"HEAD", "/v1/orders/search", ""}, // HEAD is not GET
		{"get", "/v1/orders/search", ""},  // exact method
		{"GET", "/", "r6"},
		{"GET", "", ""},
		{"GET", "/v1/users/u1/keys/k1", "r7"},
		{"GET", "/v1/users//keys/k1", "r4"},
		{"GET", "/v1/trailing/", "r8"},
		{"GET", "/v1/trailing", "r4"},
		{"GET", "/v1/orders/search?x=1", "r1"}, // the caller passes the path without its query
		{"GET", "/v1/orders/%73earch", "r1"},   // raw bytes, no decoding
		{"M-SEARCH", "/x", "r9"},
		{"GET", "/v2/b/1/w", "r10"},
		{"GET", "/v2/b/1/z", "r11"}, // literal b fails deeper; {a} succeeds
		{"GET", "/v2/b/1/y", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			got := ""
			if r := p.Resolve(tt.method, tt.path); r != nil {
				got = r.ID
			}
			if got != tt.want {
				t.Errorf("Resolve(%s %s) = %q, want %q", tt.method, tt.path, got, tt.want)
			}
			if lin := resolveLinear(p, tt.method, tt.path); lin != p.Resolve(tt.method, tt.path) {
				t.Errorf("resolveLinear(%s %s) = %v, disagrees with Resolve", tt.method, tt.path, lin)
			}
		})
	}
}

func TestResolveAmbiguity(t *testing.T) {
	tests := []struct {
		name   string
		routes []string
		want   string // "" loads
	}{
		{"same literal", []string{"GET /a", "GET /a"}, `route "r1" (GET /a) could match the same requests as route "r0" (GET /a)`},
		{"same literal other method", []string{"GET /a", "POST /a"}, ""},
		{"same pattern shape", []string{"GET /a/{x}", "GET /a/{y}"}, "could match the same requests"},
		{"crossing patterns", []string{"GET /a/{x}/c", "GET /a/b/{y}"}, "could match the same requests"},
		{"pattern and more general pattern", []string{"GET /a/{x}/items", "GET /a/{x}/{y}"}, "could match the same requests"},
		{"patterns differing in a literal", []string{"GET /a/{x}/items", "GET /a/{x}/owners"}, ""},
		{"patterns of different lengths", []string{"GET /a/{x}", "GET /a/{x}/{y}"}, ""},
		{"literal and pattern", []string{"GET /a/b", "GET /a/{x}"}, ""},
		{"same prefix", []string{"GET /a/*", "GET /a/*"}, "could match the same requests"},
		{"nested prefixes", []string{"GET /a/*", "GET /a/b/*"}, ""},
		{"prefix and literal", []string{"GET /a/*", "GET /a/b"}, ""},
		{"root prefix", []string{"GET /*", "GET /a/*"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := policyWithRoutes(t, tt.routes...)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("load = %v, want ok", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("load = %v, want error containing %q", err, tt.want)
			}
			if tt.want != "" && err != nil && !strings.Contains(err.Error(), "route_groups[0].routes[1]: ") {
				t.Errorf("error %q does not name the second route's place", err)
			}
		})
	}
}

func TestTemplateErrors(t *testing.T) {
	for tmpl, want := range map[string]string{
		"v1/x":       "must start with /",
		"/a//b":      "empty segment",
		"/a/../b":    "dot segment",
		"/a/./b":     "dot segment",
		"/a/{x":      "{name} must be a whole segment",
		"/a/x{y}":    "{name} must be a whole segment",
		"/a/{}":      "{name} must be a whole segment",
		"/a/{x-y}":   "{name} must be a whole segment",
		"/a/{x}/{x}": "{x} appears twice",
		"/a/*/b":     "* is allowed only as a final /* segment",
		"/a*":        "* is allowed only",
		"/{t}/*":     "a /* template cannot hold {name} segments",
		"/a b":       "not allowed in a path",
		"/a?b":       "not allowed in a path",
		"/a#b":       "not allowed in a path",
		"/a\\b":      "not allowed in a path",
	} {
		t.Run(tmpl, func(t *testing.T) {
			_, err := policyWithRoutes(t, "GET "+tmpl)
			if err == nil || !strings.Contains(err.Error(), "route_groups[0].routes[0].path_template: ") || !strings.Contains(err.Error(), want) {
				t.Errorf("load(%q) = %v, want path_template error containing %q", tmpl, err, want)
			}
		})
	}
}

func TestResolveAllocs(t *testing.T) {
	doc, err := policyWithRoutes(t, "GET /v1/orders/search", "GET /v1/orders/{id}", "GET /v1/*")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ParsePolicy(doc, Options{AllowUnsigned: true})
	for _, path := range []string{"/v1/orders/search", "/v1/orders/1", "/v1/x/y", "/nope"} {
		if n := testing.AllocsPerRun(100, func() { p.Resolve("GET", path) }); n != 0 {
			t.Errorf("Resolve(GET %s) allocates %v times, want 0", path, n)
		}
	}
}

func BenchmarkResolve(b *testing.B) {
	var routes []string
	for i := range 200 {
		routes = append(routes, fmt.Sprintf("GET /v1/svc%d/items", i), fmt.Sprintf("GET /v1/svc%d/items/{id}", i), fmt.Sprintf("GET /v1/svc%d/*", i))
	}
	doc, err := policyWithRoutes(b, routes...)
	if err != nil {
		b.Fatal(err)
	}
	p, _ := ParsePolicy(doc, Options{AllowUnsigned: true})
	for _, bc := range []struct{ name, path string }{
		{"literal", "/v1/svc150/items"},
		{"pattern", "/v1/svc150/items/42"},
		{"prefix", "/v1/svc150/a/b"},
		{"miss", "/v2/none"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Resolve("GET", bc.path)
			}
		})
	}
}

// match is the reference matcher of a pattern template, checked against
// the trie by resolveLinear.
func (t *template) match(path string) bool {
	if len(path) == 0 || path[0] != '/' {
		return false
	}
	rest := path[1:]
	for i, seg := range t.segs {
		var s string
		before, after, found := strings.Cut(rest, "/")
		if i == len(t.segs)-1 {
			if found {
				return false
			}
			s = rest
		} else {
			if !found {
				return false
			}
			s, rest = before, after
		}
		if seg.param {
			if s == "" {
				return false
			}
		} else if s != seg.lit {
			return false
		}
	}
	return true
}

// resolveLinear is Resolve by brute force over every route, the
// reference for the indexed Resolve.
func resolveLinear(p *Policy, method, path string) *Route {
	var pattern, prefix *Route
	for _, r := range p.Routes {
		if r.Method != method {
			continue
		}
		switch r.tmpl.kind {
		case tmplLiteral:
			if r.PathTemplate == path {
				return r
			}
		case tmplPattern:
			if r.tmpl.match(path) {
				pattern = r
			}
		case tmplPrefix:
			if len(path) > len(r.tmpl.prefix) && strings.HasPrefix(path, r.tmpl.prefix) &&
				(prefix == nil || len(r.tmpl.prefix) > len(prefix.tmpl.prefix)) {
				prefix = r
			}
		}
	}
	if pattern != nil {
		return pattern
	}
	return prefix
}
