package bundle

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Route resolution (SPEC §5.1). A path_template is one of three kinds:
//
//   - literal, "/v1/orders/search": matches that exact raw path;
//   - pattern, "/v1/orders/{id}": each {name} matches one non-empty
//     segment, every other segment literally;
//   - prefix, "/v1/orders/*" [ours]: matches "/v1/orders/" followed by at
//     least one byte, so not "/v1/orders" nor "/v1/orders/" (add a literal
//     route for those). Its part before "/*" has no {name} segments.
//
// A literal match beats a pattern match, which beats a prefix match; among
// prefixes the longer wins. SPEC orders nothing among patterns, so two
// patterns of one method that can match the same path (same segment count,
// and at each position a {name} or equal literals: "/a/{x}/c" and "/a/b/{y}"
// both match "/a/b/c") make the bundle "match the same request equally" and
// it is refused; so are equal literals and equal prefixes. A path is matched
// as raw bytes: no decoding, no normalisation (core has already refused
// non-canonical paths, SPEC §4).

type tmplKind uint8

const (
	tmplLiteral tmplKind = iota
	tmplPattern
	tmplPrefix
)

type segment struct {
	lit   string
	param bool
}

type template struct {
	kind   tmplKind
	segs   []segment // tmplPattern
	prefix string    // tmplPrefix: the template without its final '*'
}

func compileTemplate(t string) (template, error) {
	if !strings.HasPrefix(t, "/") {
		return template{}, errors.New("must start with /")
	}
	body := t
	kind := tmplLiteral
	if strings.HasSuffix(t, "/*") {
		kind = tmplPrefix
		body = t[:len(t)-1] // keeps the trailing '/'
	}
	segs := strings.Split(body[1:], "/")
	var names []string
	for i, s := range segs {
		switch {
		case s == "" && i != len(segs)-1:
			return template{}, errors.New("empty segment (//)")
		case s == "." || s == "..":
			return template{}, errors.New("dot segment")
		case strings.ContainsAny(s, "{}"):
			name, ok := strings.CutPrefix(s, "{")
			name, ok2 := strings.CutSuffix(name, "}")
			if !ok || !ok2 || !validParamName(name) {
				return template{}, fmt.Errorf("segment %q: {name} must be a whole segment, name letters, digits and _", s)
			}
			if kind == tmplPrefix {
				return template{}, errors.New("a /* template cannot hold {name} segments")
			}
			if slices.Contains(names, name) {
				return template{}, fmt.Errorf("{%s} appears twice", name)
			}
			names = append(names, name)
			segs[i] = "{}"
		case strings.Contains(s, "*"):
			return template{}, errors.New("* is allowed only as a final /* segment")
		}
		for j := 0; j < len(s); j++ {
			if c := s[j]; c <= ' ' || c == 0x7f || c == '?' || c == '#' || c == '\\' {
				return template{}, fmt.Errorf("segment %q holds a byte not allowed in a path", s)
			}
		}
	}
	switch {
	case kind == tmplPrefix:
		return template{kind: tmplPrefix, prefix: body}, nil
	case len(names) == 0:
		return template{kind: tmplLiteral}, nil
	}
	tm := template{kind: tmplPattern, segs: make([]segment, len(segs))}
	for i, s := range segs {
		tm.segs[i] = segment{lit: s, param: s == "{}"}
	}
	return tm, nil
}

func validParamName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// overlaps reports whether two pattern templates can match one path.
func (t *template) overlaps(u *template) bool {
	if len(t.segs) != len(u.segs) {
		return false
	}
	for i, a := range t.segs {
		b := u.segs[i]
		if !a.param && !b.param && a.lit != b.lit {
			return false
		}
	}
	return true
}

// methodIndex holds one method's routes, precomputed at load so Resolve
// allocates nothing.
type methodIndex struct {
	literal  map[string]*Route
	patterns map[int][]*Route  // by segment count, for the overlap check
	trie     trieNode          // the same patterns, for Resolve
	prefixes map[string]*Route // by prefix, ending in '/'
}

// buildIndex indexes routes by method and refuses two routes that could
// match one request equally. where names a route's place in the document.
func buildIndex(routes []*Route, where map[*Route]string) (map[string]*methodIndex, error) {
	idx := make(map[string]*methodIndex)
	conflict := func(a, b *Route) error {
		return fmt.Errorf("%s: route %q (%s %s) could match the same requests as route %q (%s %s) at %s",
			where[b], b.ID, b.Method, b.PathTemplate, a.ID, a.Method, a.PathTemplate, where[a])
	}
	for _, r := range routes {
		mi := idx[r.Method]
		if mi == nil {
			mi = &methodIndex{
				literal:  make(map[string]*Route),
				patterns: make(map[int][]*Route),
				prefixes: make(map[string]*Route),
			}
			idx[r.Method] = mi
		}
		switch r.tmpl.kind {
		case tmplLiteral:
			if other := mi.literal[r.PathTemplate]; other != nil {
				return nil, conflict(other, r)
			}
			mi.literal[r.PathTemplate] = r
		case tmplPattern:
			n := len(r.tmpl.segs)
			for _, other := range mi.patterns[n] {
				if other.tmpl.overlaps(&r.tmpl) {
					return nil, conflict(other, r)
				}
			}
			mi.patterns[n] = append(mi.patterns[n], r)
			mi.trie.insert(r)
		case tmplPrefix:
			if other := mi.prefixes[r.tmpl.prefix]; other != nil {
				return nil, conflict(other, r)
			}
			mi.prefixes[r.tmpl.prefix] = r
		}
	}
	return idx, nil
}

// Resolve returns the route for a request, or nil. method must match
// exactly (HEAD is not GET); path is the raw request path without the
// query. It allocates nothing and is safe for concurrent use.
func (p *Policy) Resolve(method, path string) *Route {
	mi := p.index[method]
	if mi == nil {
		return nil
	}
	if r := mi.literal[path]; r != nil {
		return r
	}
	if len(path) > 0 && path[0] == '/' {
		// Unique: overlapping patterns were refused at load.
		if r := mi.trie.find(path[1:]); r != nil {
			return r
		}
	}
	// Longest prefix first: try path up to each '/', from the right, that
	// leaves at least one byte after it.
	for i := len(path) - 2; i >= 0; i-- {
		if path[i] == '/' {
			if r := mi.prefixes[path[:i+1]]; r != nil {
				return r
			}
		}
	}
	return nil
}

// RouteByID returns the route with that route_id, or nil (--route-id).
func (p *Policy) RouteByID(id string) *Route { return p.byID[id] }

// trieNode is one segment position of the pattern templates of a method:
// literal children by text, one child for {name}, and the route whose
// template ends here.
type trieNode struct {
	lit   map[string]*trieNode
	param *trieNode
	route *Route
}

func (n *trieNode) insert(r *Route) {
	for _, seg := range r.tmpl.segs {
		if seg.param {
			if n.param == nil {
				n.param = new(trieNode)
			}
			n = n.param
			continue
		}
		if n.lit == nil {
			n.lit = make(map[string]*trieNode)
		}
		c := n.lit[seg.lit]
		if c == nil {
			c = new(trieNode)
			n.lit[seg.lit] = c
		}
		n = c
	}
	n.route = r
}

// find matches rest, a path after its leading '/', trying the literal
// child before the {name} child at each segment (a literal may fail deeper
// where {name} succeeds). The work is bounded by the trie's size, and it
// allocates nothing.
func (n *trieNode) find(rest string) *Route {
	seg, tail, more := strings.Cut(rest, "/")
	if c := n.lit[seg]; c != nil {
		if r := c.next(tail, more); r != nil {
			return r
		}
	}
	if n.param != nil && seg != "" {
		return n.param.next(tail, more)
	}
	return nil
}

func (n *trieNode) next(tail string, more bool) *Route {
	if !more {
		return n.route
	}
	return n.find(tail)
}
