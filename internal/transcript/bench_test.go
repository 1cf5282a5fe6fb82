package transcript

import (
	"crypto/rand"
	"testing"
)

// BenchmarkMatchRequest measures the verifier's rebuild for a request shaped
// like the DERIVED vector: a POST whose caller covered Content-Type and the
// nonce while X-Ignore-Me went uncovered, so the match is the third
// candidate. "urllib-covered-content-type" adds the uncovered User-Agent and
// Accept-Encoding urllib sends, which makes it the fourteenth. The 1 KiB body hash is precomputed, as
// the verifier computes it while reading the body.
func BenchmarkMatchRequest(b *testing.B) {
	body := make([]byte, 1024)
	rand.Read(body)
	for _, bc := range []struct {
		name string
		sent sent
	}{
		{"derived", sent{headers: wire("Content-Type", "application/json", "X-Ignore-Me", "not-covered"), covered: []string{"content-type", "x-trustplane-nonce"}}},
		{"urllib-covered-content-type", derivedShaped()},
		{"python-urllib", sent{headers: wire(urllibAdded...), covered: []string{"x-trustplane-nonce"}}},
		{"query", sent{method: "GET", query: "z=last&a=2&a=10&space=a%20b&encoded=%7E&empty=", headers: wire(fetchAdded...), covered: []string{"x-trustplane-nonce"}}},
		{"eight-optional-none-covered", sent{headers: wire("X-A", "1", "X-B", "2", "X-C", "3", "X-D", "4", "X-E", "5", "X-F", "6", "X-G", "7", "X-H", "8"), covered: []string{"x-trustplane-nonce"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			claimed := bc.sent.digest(b)
			req := bc.sent.request()
			bind := testBinding
			b.ReportAllocs()
			for b.Loop() {
				if _, err := MatchRequest(req, &bind, nil, &claimed); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkNormalizeQuery(b *testing.B) {
	for _, bc := range []struct{ name, raw string }{
		{"empty", ""},
		{"vector", "z=last&a=2&a=10&space=a%20b&encoded=%7E&empty="},
		{"broker", "currency=USD&expand=items"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := NormalizeQuery(bc.raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
