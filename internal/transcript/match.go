package transcript

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"hash"
	"math/bits"
	"slices"
	"strings"
	"sync"
)

// Outcomes of [MatchRequest] that a verifier maps to reason codes (SPEC §6).
var (
	// ErrNonceMissing: the request has no X-TrustPlane-Nonce header
	// (invalid_request_proof).
	ErrNonceMissing = errors.New("x-trustplane-nonce header missing")
	// ErrRequiredHeaderMissing: a name of the route's
	// signed_headers.required is absent (request_binding_mismatch).
	ErrRequiredHeaderMissing = errors.New("required signed header missing")
	// ErrNoMatch: no candidate covered set rebuilds the claimed digest
	// (request_binding_mismatch).
	ErrNoMatch = errors.New("rebuilt transcript does not match the claimed digest")
)

// Request is what a verifier received (SPEC §4): everything in it comes
// from the request itself or from the connection, never from a caller's
// copy of a transcript field.
type Request struct {
	// Method, Path and RawQuery are from the request line: Path raw as sent
	// (no decoding), RawQuery without its '?'. Method is trimmed and
	// upper-cased here.
	Method, Path, RawQuery string
	// Scheme and Authority are the values SPEC §4 derives (TLS state,
	// Host, trusted proxy headers); they are trimmed and lower-cased here.
	Scheme, Authority string
	// Header holds the request headers as net/http gives them (an
	// http.Header is assignable). Names may be in any case; for each name
	// the first value counts. If two keys fold to the same lower-case name,
	// the key that sorts first in byte order wins (for http.Header that is
	// the canonical form, e.g. "Content-Type" before "content-type").
	Header map[string][]string
	// BodySHA256 is the lowercase hex SHA-256 of the body bytes exactly as
	// received, computed by the caller of MatchRequest.
	BodySHA256 string
}

// Binding holds the transcript fields that come from the verified passport
// and the resolved route.
type Binding struct {
	// Audience is the passport's aud, RouteID the resolved route, JTI the
	// passport's jti, and Nonce the X-TrustPlane-Nonce header, trimmed.
	Audience, RouteID, JTI, Nonce string
	// IssuedAt is the passport's iat in Unix seconds.
	IssuedAt int64
	// KeyBinding is the passport's cnf.key_binding.
	KeyBinding string
}

// Policy is the covered-header policy of a route (SPEC §3.4, §5.3).
type Policy struct {
	// Required lists names that must be present and are always covered:
	// the route's signed_headers.required, in any case. A required name
	// is covered even if Ignore or the never-covered list names it: an
	// explicit requirement beats a general exclusion [ours].
	Required []string
	// Ignore lists names that are never covered: the route's
	// signed_headers.ignore, --ignore-headers and adapter-specific names,
	// in any case. An entry ending in "*" matches every name with that
	// prefix ("x-original-*"); "*" alone matches every name.
	Ignore []string
	// MaxCandidates bounds the covered sets tried per request. If zero or
	// negative, DefaultMaxCandidates.
	MaxCandidates int
}

// Match describes the covered set whose transcript matched.
type Match struct {
	// Digest is the rebuilt transcript digest (equal to the claimed one).
	Digest [32]byte
	// AllowList is the covered names, lower case and sorted: the
	// headers.allow_list line.
	AllowList []string
	// Tried counts the candidate sets hashed, the matching one included.
	Tried int
}

// MatchRequest rebuilds the transcript of req under b for the candidate
// covered-header sets of SPEC §3.4, in its order, and returns the first whose
// digest equals claimed.
//
// Headers that are never covered (hop-by-hop, Authorization, the proof
// headers, Forwarded, X-Forwarded-*, X-Real-IP, Via, and p.Ignore) are no
// candidates. X-TrustPlane-Nonce and p.Required are always covered; every
// other present name may be. Candidates are tried in this order: every
// optional name except those HTTP client libraries add on their own
// (Content-Type, Accept, Accept-Encoding, Accept-Language, User-Agent,
// Sec-Fetch-Mode); every optional name; then every other subset, larger
// first, and among subsets of one size in lexicographic order of their
// sorted name lists (names compared in byte order). A set is tried once,
// at most p.MaxCandidates sets are tried, and with more than 8 optional
// names only the first two. The content_encoding line comes from the first
// Content-Encoding value.
//
// The error matches exactly one of [ErrNonceMissing],
// [ErrRequiredHeaderMissing], [ErrMalformedQuery] or [ErrNoMatch], checked
// in that order. p may be nil, meaning the zero Policy; a nil req, b or
// claimed matches nothing.
//
// The digests are public values, so the comparison need not be constant
// time; it is exact. MatchRequest is safe for concurrent use.
func MatchRequest(req *Request, b *Binding, p *Policy, claimed *[32]byte) (Match, error) {
	if p == nil {
		p = &Policy{}
	}
	if req == nil || b == nil || claimed == nil {
		return Match{}, ErrNoMatch
	}
	s := scratchPool.Get().(*scratch)
	defer s.release()

	contentEncoding, err := s.collect(req.Header, p)
	if err != nil {
		return Match{}, err
	}
	s.q, err = appendNormalizedQuery(s.q[:0], req.RawQuery, &s.qs)
	if err != nil {
		return Match{}, err
	}

	// SPEC §3.4, Cost: hash the lines before headers.allow_list once, then
	// restore that state for each candidate.
	s.buf = appendPrefix(s.buf[:0], &prefixFields{
		method:          req.Method,
		scheme:          req.Scheme,
		authority:       req.Authority,
		path:            req.Path,
		audience:        b.Audience,
		routeID:         b.RouteID,
		contentEncoding: contentEncoding,
		query:           s.q,
	})
	s.buf = append(s.buf, "headers.allow_list="...)
	s.h.Reset()
	s.h.Write(s.buf)
	if s.state, err = s.h.(encoding.BinaryAppender).AppendBinary(s.state[:0]); err != nil {
		return Match{}, err // unreachable for crypto/sha256
	}
	s.suffix = appendSuffix(s.suffix[:0], req.BodySHA256, b.JTI, trimSpace(b.Nonce), b.IssuedAt, b.KeyBinding)

	maxCandidates := p.MaxCandidates
	if maxCandidates <= 0 {
		maxCandidates = DefaultMaxCandidates
	}
	m := s.optional
	tried := 0
	var hit candidate
	try := func(c candidate) bool { // does not escape: no allocation
		tried++
		hit = c
		return s.digest(c) == *claimed
	}
	found := try(candidate{mode: withoutAdded})
	if !found && s.added > 0 && tried < maxCandidates {
		found = try(candidate{mode: allOptional})
	}
	if !found && m <= 8 {
		found = s.subsets(m, maxCandidates, &tried, claimed, &hit)
	}
	if !found {
		return Match{}, ErrNoMatch
	}
	return Match{Digest: *claimed, AllowList: s.allowList(hit), Tried: tried}, nil
}

// subsets tries the remaining subsets of the m optional names, larger
// first, in lexicographic order of their sorted names within one size.
//
// With optional name i mapped to bit m-1-i, lexicographic order of the index
// lists is descending numeric order among masks of one population count: the
// first index where two lists differ is the highest bit where the masks do.
func (s *scratch) subsets(m, maxCandidates int, tried *int, claimed *[32]byte, hit *candidate) bool {
	full := uint(1)<<m - 1
	skip := s.withoutAddedMask(m)
	for k := m; k >= 0; k-- {
		for r := full; ; r-- {
			if bits.OnesCount(r) == k && r != full && r != skip {
				if *tried >= maxCandidates {
					return false
				}
				*tried++
				*hit = candidate{mode: subset, mask: r, m: m}
				if s.digest(*hit) == *claimed {
					return true
				}
			}
			if r == 0 {
				break
			}
		}
	}
	return false
}

// The kinds of candidate set, besides the always-covered names.
const (
	withoutAdded = iota // every optional name not added by client libraries
	allOptional         // every optional name
	subset              // the optional names in mask
)

type candidate struct {
	mode int
	mask uint // bit m-1-i set: optional name i is covered
	m    int
}

func (c candidate) covers(e *entry) bool {
	switch {
	case e.opt < 0:
		return true
	case c.mode == withoutAdded:
		return !e.added
	case c.mode == allOptional:
		return true
	}
	return c.mask>>(c.m-1-int(e.opt))&1 == 1
}

// digest hashes the candidate's allow_list and selected lines after the
// prefix state, then the suffix.
func (s *scratch) digest(c candidate) [32]byte {
	s.buf = s.buf[:0]
	n := 0
	for i := range s.ents {
		e := &s.ents[i]
		if !c.covers(e) {
			continue
		}
		if n > 0 {
			s.buf = append(s.buf, ',')
		}
		s.buf = append(s.buf, s.names[e.off:e.end]...)
		n++
	}
	s.buf = append(s.buf, "\nheaders.selected="...)
	n = 0
	for i := range s.ents {
		e := &s.ents[i]
		if !c.covers(e) {
			continue
		}
		if n > 0 {
			s.buf = append(s.buf, ',')
		}
		s.buf = append(s.buf, s.names[e.off:e.end]...)
		s.buf = append(s.buf, ':')
		s.buf = append(s.buf, s.hexes[i][:]...)
		n++
	}
	_ = s.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(s.state) // state came from the same hash
	s.h.Write(s.buf)
	s.h.Write(s.suffix)
	s.h.Sum(s.sum[:0])
	return s.sum
}

// allowList returns the names c covers, in allow-list order. It reads the
// entries rather than splitting the line: a name holding a comma (not a
// valid HTTP token, but a map may hold anything) would split wrongly.
func (s *scratch) allowList(c candidate) []string {
	n, size := 0, 0
	for i := range s.ents {
		if e := &s.ents[i]; c.covers(e) {
			n++
			size += int(e.end - e.off)
		}
	}
	// One string holding every name, sliced: two allocations in all.
	var all strings.Builder
	all.Grow(size)
	for i := range s.ents {
		if e := &s.ents[i]; c.covers(e) {
			all.Write(s.names[e.off:e.end])
		}
	}
	text := all.String()
	out := make([]string, 0, n)
	for i := range s.ents {
		if e := &s.ents[i]; c.covers(e) {
			l := int(e.end - e.off)
			out = append(out, text[:l])
			text = text[l:]
		}
	}
	return out
}

// withoutAddedMask returns the subset mask of the first candidate.
func (s *scratch) withoutAddedMask(m int) uint {
	var r uint
	for i := range s.ents {
		if e := &s.ents[i]; e.opt >= 0 && !e.added {
			r |= 1 << (m - 1 - int(e.opt))
		}
	}
	return r
}

// entry is one distinct header name of the request.
type entry struct {
	key      string // the map key, for choosing among keys that fold together
	value    string // its first value, untrimmed
	off, end int32  // lower-case name: s.names[off:end]
	opt      int32  // index among the optional names in name order, or -1 when always covered
	added    bool   // a name client libraries add on their own (SPEC §3.4, A)
}

// scratch holds per-request buffers. Pooled: a verifier's hot path then
// allocates only the returned allow list.
type scratch struct {
	names    []byte
	ents     []entry
	hexes    [][64]byte // hex SHA-256 of each entry's trimmed value
	optional int        // number of optional entries
	added    int        // number of optional entries that are client-added
	buf      []byte
	suffix   []byte
	state    []byte
	q        []byte
	qs       queryScratch
	sum      [32]byte
	h        hash.Hash
}

var scratchPool = sync.Pool{New: func() any { return &scratch{h: sha256.New()} }}

// maxPooledBytes keeps a request with huge headers or query from pinning its
// buffers in the pool, as fmt does for its printers.
const maxPooledBytes = 64 << 10

func (s *scratch) release() {
	if cap(s.names) > maxPooledBytes || cap(s.buf) > maxPooledBytes ||
		cap(s.q) > maxPooledBytes || cap(s.qs.enc) > maxPooledBytes || cap(s.ents) > 1024 {
		return
	}
	clear(s.ents) // drop references to request strings
	scratchPool.Put(s)
}

// collect classifies the request's header names, checks the always-covered
// ones are present, hashes the value of every candidate name once, and
// returns the first Content-Encoding value.
func (s *scratch) collect(h map[string][]string, p *Policy) (contentEncoding string, err error) {
	s.names, s.ents = s.names[:0], s.ents[:0]
	var ceKey string
	nonce := false
	for key, vs := range h {
		if len(vs) == 0 {
			continue
		}
		off := len(s.names)
		s.names = appendLowerASCII(s.names, trimSpace(key))
		name := s.names[off:]
		e := entry{off: int32(off), end: int32(len(s.names)), key: key, value: vs[0], opt: -1}
		if string(name) == "content-encoding" && (ceKey == "" || key < ceKey) {
			contentEncoding, ceKey = vs[0], key
		}
		switch {
		case len(name) == 0:
			s.names = s.names[:off]
			continue
		case string(name) == "x-trustplane-nonce":
			nonce = true
		case matchesAny(name, p.Required, false):
		case neverCovered(name) || matchesAny(name, p.Ignore, true):
			s.names = s.names[:off]
			continue
		default:
			e.opt = 0 // numbered below, once in name order
		}
		s.ents = append(s.ents, e)
	}
	if !nonce {
		return "", ErrNonceMissing
	}
	names := s.names
	slices.SortFunc(s.ents, func(a, b entry) int {
		if c := bytes.Compare(names[a.off:a.end], names[b.off:b.end]); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	// Keep the first key of each name; number the optional names in name
	// order.
	out := s.ents[:0]
	s.optional, s.added = 0, 0
	var prev []byte
	for _, e := range s.ents {
		name := names[e.off:e.end]
		if prev != nil && bytes.Equal(prev, name) {
			continue
		}
		prev = name
		if e.opt >= 0 {
			e.opt = int32(s.optional)
			e.added = clientAdded(name)
			s.optional++
			if e.added {
				s.added++
			}
		}
		out = append(out, e)
	}
	s.ents = out
	for _, r := range p.Required {
		if r = trimSpace(r); r != "" && !s.has(r) {
			return "", ErrRequiredHeaderMissing
		}
	}
	s.hexes = slices.Grow(s.hexes[:0], len(s.ents))[:len(s.ents)]
	for i := range s.ents {
		// Copy into a scratch buffer: hashing the string through the
		// hash.Hash interface would allocate a []byte copy per value.
		s.buf = append(s.buf[:0], trimSpace(s.ents[i].value)...)
		s.h.Reset()
		s.h.Write(s.buf)
		hex.Encode(s.hexes[i][:], s.h.Sum(s.sum[:0]))
	}
	return contentEncoding, nil
}

// has reports whether an always-covered entry is named name (any case).
func (s *scratch) has(name string) bool {
	for i := range s.ents {
		if e := &s.ents[i]; e.opt < 0 && equalFoldBytes(s.names[e.off:e.end], name) {
			return true
		}
	}
	return false
}

// matchesAny reports whether the lower-case name equals one of list (any
// case, trimmed), or with wildcard, starts with the part of an entry before
// its trailing "*".
func matchesAny(name []byte, list []string, wildcard bool) bool {
	for _, l := range list {
		l = trimSpace(l)
		if wildcard && strings.HasSuffix(l, "*") {
			if p := l[:len(l)-1]; len(name) >= len(p) && equalFoldBytes(name[:len(p)], p) {
				return true
			}
			continue
		}
		if l != "" && equalFoldBytes(name, l) {
			return true
		}
	}
	return false
}

// neverCovered reports whether a lower-case name is on the fixed
// never-covered list of SPEC §3.4 step 1: hop-by-hop and framing headers,
// credentials, the proof headers that carry the digest itself, and what
// proxies add.
func neverCovered(name []byte) bool {
	switch string(name) {
	case "host", "content-length", "transfer-encoding", "connection", "keep-alive",
		"te", "trailer", "upgrade", "proxy-authorization", "proxy-connection",
		"authorization", "x-trustplane-body-sha256", "x-trustplane-transcript-sha256",
		"x-trustplane-proof", "forwarded", "x-real-ip", "via":
		return true
	}
	return bytes.HasPrefix(name, []byte("x-forwarded-"))
}

// clientAdded reports whether a lower-case name is one HTTP client libraries
// add without the caller covering it (SPEC §3.4, the set A).
func clientAdded(name []byte) bool {
	switch string(name) {
	case "content-type", "accept", "accept-encoding", "accept-language", "user-agent", "sec-fetch-mode":
		return true
	}
	return false
}
