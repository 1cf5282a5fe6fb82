package passport

import (
	"unicode/utf16"
	"unicode/utf8"
)

// This file is a minimal strict JSON reader (RFC 8259) for the header and
// the payload, without reflection and without allocating. It validates
// everything it reads, including members it ignores: valid UTF-8, escapes
// (a \uXXXX surrogate pair decoded, a lone surrogate refused), number
// syntax, no duplicate member names in any object at any depth (SPEC §2), no
// trailing data, and at most maxDepth nested containers.

// maxDepth bounds container nesting, the top-level object counting as one
// [ours], so that hostile input cannot exhaust the stack of the recursive
// descent in skipValue.
const maxDepth = 32

// smallNames is how many member names of open objects Parse keeps on its
// stack; past that, the names move to the heap. A passport has about a dozen.
const smallNames = 64

// A name is a decoded member name: a span of the scanner's buffer, with a
// hash that makes the duplicate search compare integers first.
type name struct {
	off, n uint16
	hash   uint32
}

// A scanner reads one JSON text from buf[pos:]. Strings are unescaped in
// place, which is safe because a decoded string is never longer than its
// escaped form, so every string it returns is a span of buf.
type scanner struct {
	buf   []byte
	pos   int
	names []name // member names of the open objects, innermost last

	// table finds duplicates in objects with more than linearNames members;
	// it is allocated on first use. objects numbers the objects begun.
	table   []slot
	objects uint16
}

// linearNames is how many members of an object are searched linearly for a
// duplicate; past that the object's names go into a hash table, so that a
// token packed with members costs linear, not quadratic, time.
const linearNames = 16

// A slot of the duplicate table holds a name of object obj (0: empty).
type slot struct {
	obj uint16
	name
}

// An object is the state of one open JSON object.
type object struct {
	base  int // index in names of its first member name
	first bool
	id    uint16 // from 1; at most one per two bytes of buf, so it cannot wrap
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (s *scanner) skipSpace() {
	for s.pos < len(s.buf) && isSpace(s.buf[s.pos]) {
		s.pos++
	}
}

// peek returns the next byte after white space, or 0 at the end.
func (s *scanner) peek() byte {
	s.skipSpace()
	if s.pos >= len(s.buf) {
		return 0
	}
	return s.buf[s.pos]
}

// end checks that nothing but white space follows the value just read.
func (s *scanner) end() error {
	s.skipSpace()
	if s.pos != len(s.buf) {
		return malformed("data after the JSON value")
	}
	return nil
}

// beginObject consumes '{' of an object at nesting depth depth.
func (s *scanner) beginObject(depth int) (object, error) {
	if s.peek() != '{' {
		return object{}, errNotObject
	}
	if depth > maxDepth {
		return object{}, malformed("JSON nested too deeply")
	}
	s.pos++
	s.objects++
	return object{base: len(s.names), first: true, id: s.objects}, nil
}

// next reads the next member name of o and the colon after it, leaving the
// scanner at the member's value. At the closing brace it returns ok false and
// forgets o's names. A name equal to an earlier one of o is refused.
func (s *scanner) next(o *object) (start, end int, ok bool, err error) {
	c := s.peek()
	switch {
	case c == '}':
		s.pos++
		s.names = s.names[:o.base]
		return 0, 0, false, nil
	case o.first:
	case c == ',':
		s.pos++
		c = s.peek()
	default:
		return 0, 0, false, malformed("expected ',' or '}' in object")
	}
	o.first = false
	if c != '"' {
		return 0, 0, false, malformed("expected member name")
	}
	start, end, err = s.readString()
	if err != nil {
		return 0, 0, false, err
	}
	if s.peek() != ':' {
		return 0, 0, false, malformed("expected ':' after member name")
	}
	s.pos++
	if err := s.addName(o, start, end); err != nil {
		return 0, 0, false, err
	}
	return start, end, true, nil
}

// addName records buf[start:end] as a member name of o, refusing a duplicate
// (SPEC §2: a parser-differential attack).
func (s *scanner) addName(o *object, start, end int) error {
	key := s.buf[start:end]
	h := uint32(2166136261) // FNV-1a
	for _, c := range key {
		h = (h ^ uint32(c)) * 16777619
	}
	nm := name{off: uint16(start), n: uint16(len(key)), hash: h}
	switch members := s.names[o.base:]; {
	case len(members) < linearNames:
		for _, m := range members {
			if s.same(m, nm) {
				return malformed("duplicate member name")
			}
		}
	default:
		if len(members) == linearNames {
			for _, m := range members {
				s.insert(o.id, m)
			}
		}
		if !s.insert(o.id, nm) {
			return malformed("duplicate member name")
		}
	}
	n := len(s.names)
	if n == cap(s.names) {
		// Copied explicitly, not by append: the first names live in Parse's
		// stack frame, and an append would make the compiler move them, and
		// the decode buffer with them, to the heap on every call.
		more := make([]name, n, 2*n)
		copy(more, s.names)
		s.names = more
	}
	s.names = s.names[:n+1]
	s.names[n] = nm
	return nil
}

func (s *scanner) same(a, b name) bool {
	return a.hash == b.hash && a.n == b.n &&
		string(s.buf[a.off:a.off+a.n]) == string(s.buf[b.off:b.off+b.n])
}

// insert adds nm to object obj's names in the table and reports false if
// obj already has that name. Entries of closed objects are never removed;
// they only lengthen probes. The table has room for every member the buffer
// can hold (at least four bytes each) at a load of at most one half, so a
// probe always ends.
func (s *scanner) insert(obj uint16, nm name) bool {
	if s.table == nil {
		size := 64
		for size < len(s.buf)/2+2 {
			size *= 2
		}
		s.table = make([]slot, size)
	}
	mask := uint32(len(s.table) - 1)
	for i := nm.hash & mask; ; i = (i + 1) & mask {
		e := &s.table[i]
		switch {
		case e.obj == 0:
			*e = slot{obj, nm}
			return true
		case e.obj == obj && s.same(e.name, nm):
			return false
		}
	}
}

var errNotObject = malformed("not a JSON object")

// string reads a JSON string value and returns its decoded span.
func (s *scanner) string() (start, end int, err error) {
	if s.peek() != '"' {
		return 0, 0, errNotString
	}
	return s.readString()
}

var errNotString = malformed("not a JSON string")

// readString decodes the string starting at the opening quote at s.pos in
// place and returns the span of its content.
func (s *scanner) readString() (start, end int, err error) {
	b := s.buf
	r := s.pos + 1
	start = r
	// Fast path: plain ASCII without escapes needs no copying.
	for r < len(b) && b[r] != '"' && b[r] != '\\' && b[r] >= 0x20 && b[r] < utf8.RuneSelf {
		r++
	}
	w := r
	for {
		if r >= len(b) {
			return 0, 0, malformed("unterminated string")
		}
		c := b[r]
		switch {
		case c == '"':
			s.pos = r + 1
			return start, w, nil
		case c < 0x20:
			return 0, 0, malformed("control character in string")
		case c == '\\':
			var n int
			r, n, err = unescape(b, r, w)
			if err != nil {
				return 0, 0, err
			}
			w += n
		case c < utf8.RuneSelf:
			b[w] = c
			r++
			w++
		default:
			rn, size := utf8.DecodeRune(b[r:])
			if rn == utf8.RuneError && size == 1 {
				return 0, 0, malformed("string is not valid UTF-8")
			}
			copy(b[w:], b[r:r+size])
			r += size
			w += size
		}
	}
}

// unescape decodes the escape sequence at b[r] into b[w:] and returns the
// index after it and the number of bytes written. Writing never overtakes
// reading: every escape is at least as long as what it decodes to.
func unescape(b []byte, r, w int) (int, int, error) {
	if r+1 >= len(b) {
		return 0, 0, malformed("unterminated string")
	}
	var c byte
	switch b[r+1] {
	case '"', '\\', '/':
		c = b[r+1]
	case 'b':
		c = '\b'
	case 'f':
		c = '\f'
	case 'n':
		c = '\n'
	case 'r':
		c = '\r'
	case 't':
		c = '\t'
	case 'u':
		rn, ok := hex4(b, r+2)
		if !ok {
			return 0, 0, malformed("bad \\u escape")
		}
		r += 6
		if utf16.IsSurrogate(rn) {
			// RFC 8259 §8.2 leaves a lone surrogate's meaning open; encoding/json
			// turns it into U+FFFD, others keep it. Refuse it [ours].
			lo, ok := hex4(b, r+2)
			if !ok || b[r] != '\\' || b[r+1] != 'u' {
				return 0, 0, malformed("lone surrogate in string")
			}
			if rn = utf16.DecodeRune(rn, lo); rn == utf8.RuneError {
				return 0, 0, malformed("lone surrogate in string")
			}
			r += 6
		}
		return r, utf8.EncodeRune(b[w:], rn), nil
	default:
		return 0, 0, malformed("bad escape in string")
	}
	b[w] = c
	return r + 2, 1, nil
}

// hex4 decodes the four hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var v rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		v = v<<4 | rune(c)
	}
	return v, true
}

// number reads a JSON number and returns its span and whether it is written
// as an integer (no fraction, no exponent).
func (s *scanner) number() (start, end int, integer bool, err error) {
	b := s.buf
	start = s.pos
	i := start
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digits(b, i)
	default:
		return 0, 0, false, malformed("bad JSON value")
	}
	integer = true
	if i < len(b) && b[i] == '.' {
		integer = false
		if j := digits(b, i+1); j > i+1 {
			i = j
		} else {
			return 0, 0, false, malformed("bad JSON number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		integer = false
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if j := digits(b, i); j > i {
			i = j
		} else {
			return 0, 0, false, malformed("bad JSON number")
		}
	}
	s.pos = i
	return start, i, integer, nil
}

func digits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// int64 reads a JSON number that must be an integer within int64; iat and
// exp are integers, and a float such as 1.0 or 1e3 is refused (SPEC §2).
func (s *scanner) int64() (int64, error) {
	c := s.peek()
	if c != '-' && (c < '0' || c > '9') {
		return 0, errNotInteger
	}
	start, end, integer, err := s.number()
	if err != nil {
		return 0, err
	}
	if !integer {
		return 0, errNotInteger
	}
	neg := s.buf[start] == '-'
	if neg {
		start++
	}
	var v uint64
	for _, c := range s.buf[start:end] {
		if v > (1<<63)/10 {
			return 0, errIntRange
		}
		v = v*10 + uint64(c-'0')
	}
	switch {
	case neg && v <= 1<<63:
		return int64(-v), nil
	case !neg && v < 1<<63:
		return int64(v), nil
	}
	return 0, errIntRange
}

var (
	errNotInteger = malformed("not a JSON integer")
	errIntRange   = malformed("integer out of range")
)

// literal reads true, false or null.
func (s *scanner) literal(lit string) error {
	if len(s.buf)-s.pos < len(lit) || string(s.buf[s.pos:s.pos+len(lit)]) != lit {
		return malformed("bad JSON value")
	}
	s.pos += len(lit)
	return nil
}

// skipValue validates one JSON value at nesting depth depth and discards it.
// Objects in it are checked for duplicate names like any other.
func (s *scanner) skipValue(depth int) error {
	switch c := s.peek(); c {
	case '{':
		o, err := s.beginObject(depth)
		if err != nil {
			return err
		}
		for {
			_, _, ok, err := s.next(&o)
			if err != nil {
				return err
			}
			if !ok {
				return nil
			}
			if err := s.skipValue(depth + 1); err != nil {
				return err
			}
		}
	case '[':
		if depth > maxDepth {
			return malformed("JSON nested too deeply")
		}
		s.pos++
		if s.peek() == ']' {
			s.pos++
			return nil
		}
		for {
			if err := s.skipValue(depth + 1); err != nil {
				return err
			}
			switch s.peek() {
			case ',':
				s.pos++
			case ']':
				s.pos++
				return nil
			default:
				return malformed("expected ',' or ']' in array")
			}
		}
	case '"':
		_, _, err := s.readString()
		return err
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	default:
		_, _, _, err := s.number()
		return err
	}
}
