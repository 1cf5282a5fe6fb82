package transcript

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"unicode/utf8"
)

// ErrMalformedQuery reports a query with a malformed percent escape, or one
// whose decoded key or value is not valid UTF-8 (SPEC §3.3 step 4). A
// verifier maps it to request_binding_mismatch.
var ErrMalformedQuery = errors.New("malformed query: bad percent escape or invalid UTF-8")

// NormalizeQuery returns raw normalised by rfc3986-sort-keys-values
// (SPEC §3.3). raw is the query as sent, without or with one leading '?'.
// Pieces are split on '&' only, a '+' stays a '+', and every piece, even an
// empty one, is a pair. The error, if any, matches [ErrMalformedQuery].
func NormalizeQuery(raw string) (string, error) {
	if raw == "" || raw == "?" {
		return "", nil
	}
	// Sized for the worst case (every byte escaped) to allocate once each.
	n := strings.Count(raw, "&") + 1
	s := &queryScratch{
		enc:   make([]byte, 0, 3*len(raw)),
		dec:   make([]byte, 0, len(raw)),
		pairs: make([]qpair, 0, n),
	}
	b, err := appendNormalizedQuery(make([]byte, 0, 3*len(raw)+2*n), raw, s)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// queryScratch holds the buffers of one normalisation so that the verifier
// can reuse them across requests.
type queryScratch struct {
	enc   []byte  // encoded keys and values, back to back
	dec   []byte  // one decoded component, for the UTF-8 check
	pairs []qpair // offsets into enc
}

// qpair locates one encoded pair in queryScratch.enc: the key is
// enc[k:v], the value enc[v:end].
type qpair struct{ k, v, end int }

// appendNormalizedQuery appends the normalised form of raw to dst.
func appendNormalizedQuery(dst []byte, raw string, s *queryScratch) ([]byte, error) {
	if len(raw) > 0 && raw[0] == '?' {
		raw = raw[1:] // step 1: one leading '?' only
	}
	if raw == "" {
		return dst, nil
	}
	s.enc, s.pairs = s.enc[:0], s.pairs[:0]
	for {
		piece, rest, more := strings.Cut(raw, "&") // step 2
		key, value, _ := strings.Cut(piece, "=")   // step 3
		var p qpair
		var err error
		p.k = len(s.enc)
		if s.enc, err = s.appendComponent(s.enc, key); err != nil {
			return dst, err
		}
		p.v = len(s.enc)
		if s.enc, err = s.appendComponent(s.enc, value); err != nil {
			return dst, err
		}
		p.end = len(s.enc)
		s.pairs = append(s.pairs, p)
		if !more {
			break
		}
		raw = rest
	}
	// Step 6: plain byte order of (key, value). Equal pairs are equal bytes,
	// so stability cannot show in the output.
	enc := s.enc
	slices.SortFunc(s.pairs, func(a, b qpair) int {
		if c := bytes.Compare(enc[a.k:a.v], enc[b.k:b.v]); c != 0 {
			return c
		}
		return bytes.Compare(enc[a.v:a.end], enc[b.v:b.end])
	})
	for i, p := range s.pairs {
		if i > 0 {
			dst = append(dst, '&')
		}
		dst = append(dst, enc[p.k:p.v]...)
		dst = append(dst, '=')
		dst = append(dst, enc[p.v:p.end]...)
	}
	return dst, nil
}

// appendComponent percent-decodes c (step 4) and appends it re-encoded
// (step 5) to dst.
func (s *queryScratch) appendComponent(dst []byte, c string) ([]byte, error) {
	s.dec = s.dec[:0]
	for i := 0; i < len(c); i++ {
		b := c[i]
		if b == '%' {
			if i+2 >= len(c) {
				return dst, ErrMalformedQuery
			}
			hi, ok1 := unhex(c[i+1])
			lo, ok2 := unhex(c[i+2])
			if !ok1 || !ok2 {
				return dst, ErrMalformedQuery
			}
			b = hi<<4 | lo
			i += 2
		}
		s.dec = append(s.dec, b)
	}
	// The Python SDK would sign invalid UTF-8 as U+FFFD, so %FF and %FE
	// would collide; SPEC §3.3 refuses rather than guess.
	if !utf8.Valid(s.dec) {
		return dst, ErrMalformedQuery
	}
	for _, b := range s.dec {
		if isUnreserved(b) {
			dst = append(dst, b)
		} else {
			dst = append(dst, '%', upperHex[b>>4], upperHex[b&0xf])
		}
	}
	return dst, nil
}

const upperHex = "0123456789ABCDEF"

// isUnreserved reports whether b is an RFC 3986 unreserved character:
// A-Z a-z 0-9 - . _ ~
func isUnreserved(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
		b == '-' || b == '.' || b == '_' || b == '~'
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
