package core

import (
	"errors"
	"strings"
)

// errPathNoncanonical is the cause recorded for a step 1 denial.
var errPathNoncanonical = errors.New("request path is not canonical")

// checkQuery applies step 1 to the raw query: no '#' (never part of a
// request target; an upstream could cut the query there while the
// verifier bound all of it) and no leading '?' (SPEC §3.3 step 1 drops one,
// so "??a=1" and "?a=1" would share a transcript while the upstream reads a
// parameter named "?a").
func checkQuery(q string) error {
	if strings.HasPrefix(q, "?") || strings.IndexByte(q, '#') >= 0 {
		return errPathNoncanonical
	}
	return nil
}

// CheckPath enforces the path hygiene of SPEC §4 on the raw request path as
// sent on the wire (no decoding): it must start with "/" and hold no dot
// segment, no empty segment ("//"), no backslash, no encoded "/", "\", "." or
// NUL, and no malformed percent escape. A path that passes means the same
// thing to the verifier and to any upstream, so both agree on the route.
//
// Path parameters count as hiding places: a segment whose part before its
// first ";" (or "%3B", which some servers decode before they cut) is ".",
// ".." or empty is refused, so "/files/..;/admin" (Tomcat and Spring cut
// "..;" to "..", then resolve it) or "/v1/;x/admin" (cut to "//", then
// merged) cannot reach another route than the one the verifier resolved.
func CheckPath(p string) error {
	if len(p) == 0 || p[0] != '/' {
		return errPathNoncanonical
	}
	segStart := 1
	params := -1 // index in p of the current segment's first ';' or "%3B"
	for i := 1; i <= len(p); i++ {
		if i < len(p) {
			c := p[i]
			switch {
			case c == '\\' || c == '#':
				// A '#' is never part of a request target (RFC 9112 §3.2);
				// a gateway would cut the path there, the verifier not.
				return errPathNoncanonical
			case c == '%':
				if i+2 >= len(p) {
					return errPathNoncanonical
				}
				hi, ok1 := unhex(p[i+1])
				lo, ok2 := unhex(p[i+2])
				if !ok1 || !ok2 {
					return errPathNoncanonical
				}
				switch hi<<4 | lo {
				case '/', '\\', '.', 0:
					return errPathNoncanonical
				case ';':
					if params < 0 {
						params = i
					}
				}
				i += 2
				continue
			case c < 0x21 || c == 0x7f:
				// Controls and spaces cannot appear in a request target; a
				// parser that tolerated them could split it differently.
				return errPathNoncanonical
			case c == ';':
				if params < 0 {
					params = i
				}
				continue
			case c != '/':
				continue
			}
		}
		// p[segStart:i] is a complete segment. Only the last one may be
		// empty (a trailing slash); none may be a dot segment, or become
		// one or empty when its path parameters are cut off.
		seg := p[segStart:i]
		if params >= 0 {
			seg = p[segStart:params]
			if seg == "" {
				return errPathNoncanonical
			}
		}
		if seg == "." || seg == ".." {
			return errPathNoncanonical
		}
		if seg == "" && i < len(p) {
			return errPathNoncanonical
		}
		segStart, params = i+1, -1
	}
	return nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
