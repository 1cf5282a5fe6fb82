package transcript

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
)

// Identifiers of transcript-v1 (SPEC §3.1).
const (
	// Version is the value of the first canonical line.
	Version = "trustplane-transcript-v1"
	// QueryAlgorithm names the query normalisation of SPEC §3.3.
	QueryAlgorithm = "rfc3986-sort-keys-values"
	// TimeBucketSeconds is the only bucket size a verifier accepts
	// (SPEC §3.4: the SDKs let a caller choose; we do not).
	TimeBucketSeconds = 20
	// DefaultMaxCandidates bounds the covered-header search (SPEC §3.4,
	// --max-header-candidates).
	DefaultMaxCandidates = 256
)

// emptySHA256 is the lowercase hex SHA-256 of no bytes: the hash of an empty
// body and of an empty normalised query.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// Header is one request header as received (or, for a caller, as sent).
type Header struct {
	Name, Value string
}

// Fields are the inputs of the twenty canonical lines. [Canonical] applies
// the SPEC §3.2 trim and case rules itself:
//   - Method is trimmed and upper-cased; Scheme and Authority are trimmed and
//     lower-cased (ASCII case mapping only: none of them can carry other
//     letters on the wire);
//   - ContentEncoding is trimmed and lower-cased, and empty means "identity";
//   - Nonce is trimmed;
//   - Path, RawQuery (before normalisation), Audience, RouteID, BodySHA256,
//     PassportJTI and KeyBinding are used as given;
//   - AllowList names are trimmed, lower-cased and de-duplicated, empty ones
//     dropped, then sorted; each covered header's value is the trimmed value
//     of the first entry of Headers whose trimmed, lower-cased name matches.
type Fields struct {
	Method, Scheme, Authority, Path, RawQuery string
	Audience, RouteID, ContentEncoding        string

	Headers   []Header
	AllowList []string

	// BodySHA256 is the lowercase hex SHA-256 of the body, see [BodySHA256].
	BodySHA256 string

	PassportJTI, Nonce string
	// IssuedAt is the passport's iat, in Unix seconds.
	IssuedAt   int64
	KeyBinding string
}

// BodySHA256 returns the lowercase hex SHA-256 of body (SPEC §3.2).
func BodySHA256(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// Canonical returns the canonical transcript bytes of f: the twenty lines of
// SPEC §3.1 joined by LF, without a trailing LF. It fails with an error
// matching [ErrMalformedQuery] when RawQuery does not normalise, and with an
// error when a covered name has no entry in f.Headers (such a transcript can
// never match a request).
func Canonical(f *Fields) ([]byte, error) {
	names := canonicalAllowList(f.AllowList)
	hexes := make([][64]byte, len(names))
	for i, name := range names {
		v, ok := firstHeader(f.Headers, name)
		if !ok {
			return nil, fmt.Errorf("transcript: covered header %q absent from headers", name)
		}
		sum := sha256.Sum256([]byte(trimSpace(v)))
		hex.Encode(hexes[i][:], sum[:])
	}
	query, err := appendNormalizedQuery(nil, f.RawQuery, &queryScratch{})
	if err != nil {
		return nil, fmt.Errorf("transcript: %w", err)
	}
	b := make([]byte, 0, 1024)
	b = appendPrefix(b, &prefixFields{
		method:          f.Method,
		scheme:          f.Scheme,
		authority:       f.Authority,
		path:            f.Path,
		audience:        f.Audience,
		routeID:         f.RouteID,
		contentEncoding: f.ContentEncoding,
		query:           query,
	})
	b = append(b, "headers.allow_list="...)
	for i, name := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, name...)
	}
	b = append(b, "\nheaders.selected="...)
	for i, name := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, name...)
		b = append(b, ':')
		b = append(b, hexes[i][:]...)
	}
	b = appendSuffix(b, f.BodySHA256, f.PassportJTI, trimSpace(f.Nonce), f.IssuedAt, f.KeyBinding)
	return b, nil
}

// Digest returns the SHA-256 of [Canonical]'s bytes: the transcript digest
// that the proof signs (SPEC §3.1). Its errors are Canonical's.
func Digest(f *Fields) ([32]byte, error) {
	b, err := Canonical(f)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(b), nil
}

// AllowList returns names as the headers.allow_list line lists them
// (SPEC §3.4): trimmed, lower case, de-duplicated, sorted ascending, with
// names empty after trimming dropped, as both SDKs do.
func AllowList(names []string) []string { return canonicalAllowList(names) }

// canonicalAllowList applies SPEC §3.4: trimmed, lower case, de-duplicated,
// sorted ascending. Like both SDKs it drops names that are empty after trim.
func canonicalAllowList(list []string) []string {
	out := make([]string, 0, len(list))
	for _, n := range list {
		n = lowerASCII(trimSpace(n))
		if n != "" {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// firstHeader returns the value of the first header whose trimmed,
// lower-cased name is name (SPEC §3.4: the first header with that name).
func firstHeader(hs []Header, name string) (string, bool) {
	for _, h := range hs {
		if equalFoldASCII(trimSpace(h.Name), name) {
			return h.Value, true
		}
	}
	return "", false
}

// prefixFields are the inputs of the twelve lines before headers.allow_list,
// which a verifier hashes once per request (SPEC §3.4, Cost).
type prefixFields struct {
	method, scheme, authority, path string
	audience, routeID               string
	contentEncoding                 string // as received; trimmed and lowered here
	query                           []byte // normalised
}

// appendPrefix appends lines 1 to 12 of SPEC §3.1, each ending in LF.
func appendPrefix(b []byte, p *prefixFields) []byte {
	b = append(b, "version="+Version+"\nmethod="...)
	b = appendUpperASCII(b, trimSpace(p.method))
	b = append(b, "\nscheme="...)
	b = appendLowerASCII(b, trimSpace(p.scheme))
	b = append(b, "\nauthority="...)
	b = appendLowerASCII(b, trimSpace(p.authority))
	b = append(b, "\npath="...)
	b = append(b, p.path...)
	b = append(b, "\naudience="...)
	b = append(b, p.audience...)
	b = append(b, "\nroute_id="...)
	b = append(b, p.routeID...)
	b = append(b, "\ncontent_encoding="...)
	if ce := trimSpace(p.contentEncoding); ce != "" {
		b = appendLowerASCII(b, ce)
	} else {
		b = append(b, "identity"...)
	}
	b = append(b, "\nquery_normalization.algorithm="+QueryAlgorithm+"\nquery_normalization.normalized="...)
	b = append(b, p.query...)
	var qsum [64]byte
	if len(p.query) == 0 {
		copy(qsum[:], emptySHA256)
	} else {
		sum := sha256.Sum256(p.query)
		hex.Encode(qsum[:], sum[:])
	}
	b = append(b, "\nquery_normalization.sha256="...)
	b = append(b, qsum[:]...)
	b = append(b, "\nquery_sha256="...)
	b = append(b, qsum[:]...)
	b = append(b, '\n')
	return b
}

// appendSuffix appends LF and lines 15 to 20 of SPEC §3.1.
func appendSuffix(b []byte, bodySHA256, jti, nonce string, issuedAt int64, keyBinding string) []byte {
	b = append(b, "\nbody_sha256="...)
	b = append(b, bodySHA256...)
	b = append(b, "\npassport_jti="...)
	b = append(b, jti...)
	b = append(b, "\nnonce="...)
	b = append(b, nonce...)
	b = append(b, "\nissued_at="...)
	b = strconv.AppendInt(b, issuedAt, 10)
	b = append(b, "\ntime_bucket="...)
	b = strconv.AppendInt(b, timeBucket(issuedAt), 10)
	b = append(b, "\nkey_binding="...)
	b = append(b, keyBinding...)
	return b
}

// timeBucket is iat div 20 with floor division, as Python's // computes it
// (SPEC §3.2); it differs from Go's truncation only for negative iat, which
// passport validation refuses anyway.
func timeBucket(iat int64) int64 {
	q := iat / TimeBucketSeconds
	if iat%TimeBucketSeconds != 0 && iat < 0 {
		q--
	}
	return q
}

// isSpace reports whether c is ASCII whitespace as SPEC §3.2 defines it:
// space, tab, LF, VT, FF, CR. Other Unicode whitespace is data [ours].
func isSpace(c byte) bool {
	return c == ' ' || ('\t' <= c && c <= '\r')
}

// trimSpace removes leading and trailing ASCII whitespace (SPEC §3.2).
func trimSpace(s string) string {
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return string(appendLowerASCII(make([]byte, 0, len(s)), s))
		}
	}
	return s
}

func appendLowerASCII(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

func appendUpperASCII(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// equalFoldASCII reports whether s and t are equal under ASCII case folding.
// Header names are ASCII tokens; strings.EqualFold would also fold the
// Kelvin sign into k, which no HTTP stack does.
func equalFoldASCII(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lowerByte(s[i]) != lowerByte(t[i]) {
			return false
		}
	}
	return true
}

// equalFoldBytes is equalFoldASCII for a name held in a scratch buffer.
func equalFoldBytes(b []byte, t string) bool {
	if len(b) != len(t) {
		return false
	}
	for i := range b {
		if lowerByte(b[i]) != lowerByte(t[i]) {
			return false
		}
	}
	return true
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
