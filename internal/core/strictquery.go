package core

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Causes of a query_strict denial (request_path_noncanonical). Each names
// the rule, never the input.
var (
	errQueryPlus      = errors.New("query_strict: literal '+' in the query (a space to form decoders, a plus to RFC 3986)")
	errQuerySemicolon = errors.New("query_strict: literal ';' in the query (a pair separator to some frameworks)")
	errQueryEmpty     = errors.New("query_strict: empty pair or empty key in the query")
	errQueryNUL       = errors.New("query_strict: NUL in a query key or value")
	errQueryBrackets  = errors.New("query_strict: query key with malformed bracket suffix")
	errQueryDuplicate = errors.New("query_strict: two query keys that one framework or another reads as the same name")
)

// checkStrictQuery applies a route's query_strict option ([ours],
// docs/SPEC-EXTENSIONS.md) to the raw query: it refuses a query whose pairs
// common frameworks could read differently from each other, and so
// differently from what the caller signed (SPEC §3.3 normalises `+` and
// `%2B` alike, keeps every empty pair, and sorts duplicates). The rules:
//
//   - no literal '+' and no literal ';';
//   - no empty piece (`a=1&&b=2`, a leading or trailing '&') and no key
//     that is empty once decoded (`=x`) or has no name before a '[';
//   - no NUL in a decoded key or value;
//   - a '[' in a key starts one or more `[...]` groups that end the key;
//   - no two keys with the same name once decoded, case-folded (Unicode
//     simple folding), leading spaces dropped, and '.' and ' ' read as '_'
//     (PHP): a name is used either once whole (`a`, or a list `a[]...`)
//     or as members (`a[x]`, `a[y]`) that differ from each other.
//
// Malformed escapes and invalid UTF-8 are left to step 17
// (request_binding_mismatch), as on every route.
func checkStrictQuery(raw string) error {
	if raw == "" {
		return nil
	}
	if strings.IndexByte(raw, '+') >= 0 {
		return errQueryPlus
	}
	if strings.IndexByte(raw, ';') >= 0 {
		return errQuerySemicolon
	}
	// whole holds names used whole (plain or as a list); member holds
	// names used with a member suffix, and members the name and suffix.
	var whole, member, members map[string]bool
	for piece := range strings.SplitSeq(raw, "&") {
		if piece == "" {
			return errQueryEmpty
		}
		k, v, _ := strings.Cut(piece, "=")
		key, ok1 := percentDecode(k)
		val, ok2 := percentDecode(v)
		if !ok1 || !ok2 {
			return nil // step 17 refuses it on every route
		}
		if strings.IndexByte(key, 0) >= 0 || strings.IndexByte(val, 0) >= 0 {
			return errQueryNUL
		}
		name, suffix, ok := splitBrackets(key)
		if !ok {
			return errQueryBrackets
		}
		name = foldName(name)
		if name == "" {
			return errQueryEmpty
		}
		if whole == nil {
			whole, member, members = make(map[string]bool), make(map[string]bool), make(map[string]bool)
		}
		if suffix == "" || strings.HasPrefix(suffix, "[]") {
			if whole[name] || member[name] {
				return errQueryDuplicate
			}
			whole[name] = true
			continue
		}
		m := name + "\x00" + foldCase(suffix) // no NUL in either: refused above
		if whole[name] || members[m] {
			return errQueryDuplicate
		}
		member[name], members[m] = true, true
	}
	return nil
}

// percentDecode decodes %XX escapes; '+' stays '+' (SPEC §3.3). It reports
// false for a malformed escape or bytes that are not UTF-8.
func percentDecode(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 {
		return s, utf8.ValidString(s)
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) {
				return "", false
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			c = hi<<4 | lo
			i += 2
		}
		b = append(b, c)
	}
	return string(b), utf8.Valid(b)
}

// splitBrackets splits key at its first '[' into the name and a suffix of
// one or more "[...]" groups with no bracket inside, which must end the key
// (the shape PHP and qs turn into arrays and maps). It reports false for any
// other use of '[' after the name: PHP reads "a[b" as "a_b" and drops what
// follows a group, qs nests, others keep the text.
func splitBrackets(key string) (name, suffix string, ok bool) {
	i := strings.IndexByte(key, '[')
	if i < 0 {
		return key, "", true
	}
	name, suffix = key[:i], key[i:]
	for rest := suffix; rest != ""; {
		if rest[0] != '[' {
			return "", "", false
		}
		j := strings.IndexAny(rest[1:], "[]")
		if j < 0 || rest[1+j] != ']' {
			return "", "", false
		}
		rest = rest[j+2:]
	}
	return name, suffix, true
}

// foldName is the name a key's base means to the most lenient common
// reader: leading spaces dropped and '.' and ' ' read as '_' (PHP), case
// folded (ASP.NET compares names case-insensitively; full Unicode simple
// folding is a superset of its rule).
func foldName(name string) string {
	name = strings.TrimLeft(name, " ")
	return foldCase(strings.Map(func(r rune) rune {
		if r == '.' || r == ' ' {
			return '_'
		}
		return r
	}, name))
}

// foldCase maps every rune to the smallest rune of its Unicode simple case
// folding orbit, so two strings fold equal exactly when strings.EqualFold
// holds for them.
func foldCase(s string) string {
	return strings.Map(func(r rune) rune {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		return m
	}, s)
}
