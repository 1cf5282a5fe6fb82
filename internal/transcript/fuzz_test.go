package transcript

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

// FuzzNormalizeQuery checks that normalisation never panics, refuses only
// with ErrMalformedQuery, emits only unreserved characters, upper-case %XX
// escapes and the '=' and '&' separators (one '=' per pair), and is
// idempotent.
func FuzzNormalizeQuery(f *testing.F) {
	for _, s := range []string{
		"", "?", "z=last&a=2&a=10&space=a%20b&encoded=%7E&empty=", "currency=USD&expand=items",
		"a+b=c", "a;b", "a&&b", "%7e", "%", "%4", "%GG", "a=%FF", "é=ü",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := NormalizeQuery(raw)
		if err != nil {
			if !errors.Is(err, ErrMalformedQuery) || got != "" {
				t.Fatalf("NormalizeQuery(%q) = %q, %v", raw, got, err)
			}
			return
		}
		if got == "" {
			if raw != "" && raw != "?" {
				t.Fatalf("NormalizeQuery(%q) = empty", raw)
			}
			return
		}
		for pair := range strings.SplitSeq(got, "&") {
			if strings.Count(pair, "=") != 1 {
				t.Fatalf("NormalizeQuery(%q) = %q: pair %q has not exactly one '='", raw, got, pair)
			}
		}
		for i := 0; i < len(got); i++ {
			c := got[i]
			switch {
			case isUnreserved(c), c == '=', c == '&':
			case c == '%' && i+2 < len(got) && isUpperHex(got[i+1]) && isUpperHex(got[i+2]):
				i += 2
			default:
				t.Fatalf("NormalizeQuery(%q) = %q: byte %q at %d", raw, got, c, i)
			}
		}
		again, err := NormalizeQuery(got)
		if err != nil || again != got {
			t.Fatalf("NormalizeQuery(%q) = %q, %v; want it unchanged", got, again, err)
		}
	})
}

func isUpperHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }

// FuzzMatchRequest rebuilds transcripts from arbitrary headers and queries.
// It never panics; a match is always reproducible by Canonical from the
// headers and the returned allow list (so a wrong digest never matches);
// and a caller's covered set that the search must reach is found.
//
// headers holds "name:value" lines; bit i of covered covers line i.
func FuzzMatchRequest(f *testing.F) {
	f.Add("", "Content-Type:application/json\nX-Ignore-Me:not-covered", uint16(1), "nonce-v1-001", []byte(nil))
	f.Add("z=last&a=2&a=10&space=a%20b&encoded=%7E&empty=", "X-Ignore-Me:not-covered\nContent-Type:application/json", uint16(2), "nonce-ambiguous-001", []byte{1})
	f.Add("currency=USD&expand=items", "content-type:application/json\nUser-Agent:x\nAccept:*/*\nx-a:1\nx-b:2", uint16(0b10001), " n ", []byte("wrong"))
	f.Add("a=%FF", "Content-Encoding: GZIP\nX-Forwarded-For:1.2.3.4", uint16(3), "n", []byte(nil))
	f.Fuzz(func(t *testing.T, query, headers string, covered uint16, nonce string, wrong []byte) {
		hs := []Header{{Name: "X-TrustPlane-Nonce", Value: nonce}}
		cov := []string{"x-trustplane-nonce"}
		for i, line := range strings.Split(headers, "\n") {
			name, value, _ := strings.Cut(line, ":")
			hs = append(hs, Header{Name: name, Value: value})
			if i < 16 && covered&(1<<i) != 0 {
				cov = append(cov, name)
			}
		}
		header := map[string][]string{}
		for _, h := range hs {
			header[h.Name] = append(header[h.Name], h.Value)
		}
		req := &Request{Method: "POST", Scheme: "https", Authority: "a.example", Path: "/p", RawQuery: query, Header: header, BodySHA256: emptySHA256}
		b := &Binding{Audience: "aud", RouteID: "r", JTI: "j", Nonce: trimSpace(nonce), IssuedAt: 1740000000, KeyBinding: "software"}
		ce, _ := firstHeader(hs, "content-encoding")
		fields := &Fields{
			Method: req.Method, Scheme: req.Scheme, Authority: req.Authority, Path: req.Path, RawQuery: query,
			Audience: b.Audience, RouteID: b.RouteID, ContentEncoding: ce, Headers: hs, AllowList: cov,
			BodySHA256: emptySHA256, PassportJTI: b.JTI, Nonce: nonce, IssuedAt: b.IssuedAt, KeyBinding: b.KeyBinding,
		}
		claimed, cerr := Digest(fields)
		if len(wrong) > 0 {
			copy(claimed[:], wrong) // an arbitrary claimed digest
		}
		m, err := MatchRequest(req, b, nil, &claimed)
		if err != nil {
			if !errors.Is(err, ErrNoMatch) && !errors.Is(err, ErrMalformedQuery) && !errors.Is(err, ErrNonceMissing) {
				t.Fatalf("MatchRequest = %v", err)
			}
		} else {
			// Soundness: rebuild independently from the headers in the
			// documented precedence (the key first in byte order wins).
			keys := slices.Sorted(func(yield func(string) bool) {
				for k := range header {
					if !yield(k) {
						return
					}
				}
			})
			var ordered []Header
			for _, k := range keys {
				ordered = append(ordered, Header{Name: k, Value: header[k][0]})
			}
			var vce string
			if v, ok := firstHeader(ordered, "content-encoding"); ok {
				vce = v
			}
			f2 := *fields
			f2.Headers, f2.AllowList, f2.ContentEncoding, f2.Nonce = ordered, m.AllowList, vce, b.Nonce
			d, err := Digest(&f2)
			if err != nil || d != claimed || m.Digest != claimed {
				t.Fatalf("MatchRequest matched %q, but Canonical gives %x, %v; claimed %x", m.AllowList, d, err, claimed)
			}
		}
		if cerr != nil || len(wrong) > 0 || !searchable(hs, cov) {
			return
		}
		if err != nil {
			t.Fatalf("MatchRequest = %v; want the caller's set %q found", err, cov)
		}
	})
}

// searchable reports whether the search must find the covered set: names
// distinct after trim and lower-casing, none empty, never covered or with a
// comma or colon, and at most 8 optional ones.
func searchable(hs []Header, cov []string) bool {
	seen := map[string]bool{}
	optional := 0
	for _, h := range hs {
		n := []byte(lowerASCII(trimSpace(h.Name)))
		if len(n) == 0 || seen[string(n)] || neverCovered(n) || bytes.ContainsAny(n, ",:\n") {
			return false
		}
		seen[string(n)] = true
		if string(n) != "x-trustplane-nonce" {
			optional++
		}
	}
	return optional <= 8 && len(cov) > 0
}
