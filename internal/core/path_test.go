package core

import (
	"strings"
	"testing"
)

func TestCheckPath(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
	}{
		{"/", true},
		{"/v1/orders", true},
		{"/v1/orders/", true},
		{"/v1/orders/a%20b", true},
		{"/v1/%7Euser", true},
		{"/v1/a.b/c..d/.e", true},
		{"", false},
		{"v1/orders", false},
		{"/v1//orders", false},
		{"//v1", false},
		{"/v1/./orders", false},
		{"/v1/../orders", false},
		{"/v1/orders/..", false},
		{"/v1/orders/.", false},
		{"/.", false},
		{"/v1\\orders", false},
		{"/v1%2forders", false},
		{"/v1%2Forders", false},
		{"/v1%5corders", false},
		{"/v1/%2e%2e/orders", false},
		{"/v1/%2E/orders", false},
		{"/v1/%00", false},
		{"/v1/%", false},
		{"/v1/%4", false},
		{"/v1/%GG", false},
		{"/v1/a b", false},
		{"/v1/a\tb", false},
		{"/v1/\x7f", false},
		// Path parameters: a dot or empty segment hidden behind
		// ";" or its encoded form.
		{"/v1/files/a;b", true},
		{"/v1/cars;color=red/2", true},
		{"/v1/a.;x", true},
		{"/v1/..a;x", true},
		{"/v1/files/..;/..;/admin/purge", false},
		{"/v1/files/..;/admin", false},
		{"/v1/files/..;x/admin", false},
		{"/v1/files/.;/admin", false},
		{"/v1/files/.;x=1", false},
		{"/v1/files/..;", false},
		{"/v1/files/..%3b/admin", false},
		{"/v1/files/..%3B/admin", false},
		{"/v1/files/.%3Bx/admin", false},
		{"/v1/files/%2e%2e;/admin", false},
		{"/v1/files/%2E%2E%3B/admin", false},
		{"/v1/;x/admin", false},
		{"/v1/;/admin", false},
		{"/v1/%3bx/admin", false},
		{"/v1/orders/;jsessionid=1", false},
		{"/;", false},
		{"/..;a;b", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			err := CheckPath(tt.path)
			if (err == nil) != tt.ok {
				t.Errorf("CheckPath(%q) = %v, want ok=%v", tt.path, err, tt.ok)
			}
		})
	}
}

// FuzzCheckPath checks that an accepted path never holds what SPEC §4 bans,
// whatever the fuzzer finds.
func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"/v1/orders", "/v1/../x", "/a%2fb", "/%", "//", "/a/./b", "/\\",
		"/v1/files/..;/..;/admin/purge", "/a/.%3bx/b", "/a;b/c;d", "/v1/;x/y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if CheckPath(p) != nil {
			return
		}
		if p == "" || p[0] != '/' {
			t.Fatalf("accepted %q without a leading slash", p)
		}
		for i := 0; i < len(p); i++ {
			switch c := p[i]; {
			case c == '\\' || c < 0x21 || c == 0x7f:
				t.Fatalf("accepted %q with byte %#x", p, c)
			case c == '%':
				if i+2 >= len(p) {
					t.Fatalf("accepted %q with a truncated escape", p)
				}
				hi, ok1 := unhex(p[i+1])
				lo, ok2 := unhex(p[i+2])
				if !ok1 || !ok2 {
					t.Fatalf("accepted %q with a malformed escape", p)
				}
				if b := hi<<4 | lo; b == '/' || b == '\\' || b == '.' || b == 0 {
					t.Fatalf("accepted %q with an encoded %#x", p, b)
				}
			}
		}
		segs := splitSegments(p[1:])
		for i, s := range segs {
			if s == "." || s == ".." || s == "" && i != len(segs)-1 {
				t.Fatalf("accepted %q with segment %q", p, s)
			}
			// A server that cuts path parameters, before or after
			// decoding, must not find a dot or empty segment either.
			for _, cut := range []string{";", "%3b", "%3B"} {
				if j := strings.Index(s, cut); j >= 0 {
					if name := s[:j]; name == "" || name == "." || name == ".." {
						t.Fatalf("accepted %q with segment %q (%q before %q)", p, s, name, cut)
					}
				}
			}
		}
	})
}

func splitSegments(p string) []string {
	var out []string
	for {
		i := 0
		for i < len(p) && p[i] != '/' {
			i++
		}
		out = append(out, p[:i])
		if i == len(p) {
			return out
		}
		p = p[i+1:]
	}
}
