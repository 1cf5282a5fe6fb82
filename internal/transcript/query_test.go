package transcript

import (
	"errors"
	"testing"
)

func TestNormalizeQuery(t *testing.T) {
	tests := []struct {
		name, raw, want string
		err             error
	}{
		{name: "empty", raw: "", want: ""},
		{name: "lone question mark", raw: "?", want: ""},
		{name: "leading question mark dropped", raw: "?b=2&a=1", want: "a=1&b=2"},
		{name: "only one question mark dropped", raw: "??a", want: "%3Fa="},
		{name: "spec example", raw: "z=last&a=2&a=10&space=a%20b&encoded=%7E&empty=", want: "a=10&a=2&empty=&encoded=~&space=a%20b&z=last"},
		{name: "plus stays plus", raw: "q=a+b", want: "q=a%2Bb"},
		{name: "encoded plus", raw: "q=a%2Bb", want: "q=a%2Bb"},
		{name: "semicolon is data", raw: "a=1;b=2", want: "a=1%3Bb%3D2"},
		{name: "empty pieces are pairs", raw: "a&&b", want: "=&a=&b="},
		{name: "only separators", raw: "&", want: "=&="},
		{name: "lone equals", raw: "=", want: "="},
		{name: "split at first equals", raw: "a==b", want: "a=%3Db"},
		{name: "no equals means empty value", raw: "flag", want: "flag="},
		{name: "tilde unescaped", raw: "%7e=%7E", want: "~=~"},
		{name: "lower-case escape in", raw: "p=%2f%c3%a9", want: "p=%2F%C3%A9"},
		{name: "unreserved escapes decoded", raw: "%41%2D%2E%5F=%30", want: "A-._=0"},
		{name: "raw UTF-8 encoded", raw: "name=é", want: "name=%C3%A9"},
		{name: "space and slash encoded", raw: "p=a b/c?d", want: "p=a%20b%2Fc%3Fd"},
		{name: "sort by key then value bytes", raw: "b=1&a=b&a=a&A=z", want: "A=z&a=a&a=b&b=1"},
		{name: "sort on encoded bytes", raw: "k=%7E&k=~&k=%21", want: "k=%21&k=~&k=~"},
		{name: "encoded ampersand stays in value", raw: "a=x%26y=z", want: "a=x%26y%3Dz"},
		{name: "hash is data", raw: "a=#frag", want: "a=%23frag"},
		{name: "lone percent", raw: "%", err: ErrMalformedQuery},
		{name: "short escape", raw: "a=%4", err: ErrMalformedQuery},
		{name: "short escape in key", raw: "%4=1", err: ErrMalformedQuery},
		{name: "non-hex escape", raw: "a=%GG", err: ErrMalformedQuery},
		{name: "half hex escape", raw: "a=%4G", err: ErrMalformedQuery},
		{name: "percent before equals", raw: "a%=1", err: ErrMalformedQuery},
		{name: "invalid UTF-8 after decoding", raw: "a=%FF", err: ErrMalformedQuery},
		{name: "truncated UTF-8", raw: "a=%C3", err: ErrMalformedQuery},
		{name: "surrogate", raw: "a=%ED%A0%80", err: ErrMalformedQuery},
		{name: "raw invalid UTF-8", raw: "a=\xff", err: ErrMalformedQuery},
		{name: "malformed late piece", raw: "a=1&b=%", err: ErrMalformedQuery},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeQuery(tt.raw)
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Errorf("NormalizeQuery(%q) = %q, %v; want %q, %v", tt.raw, got, err, tt.want, tt.err)
			}
			if err != nil {
				return
			}
			if again, err := NormalizeQuery(got); err != nil || again != got {
				t.Errorf("NormalizeQuery(%q) = %q, %v; not idempotent", got, again, err)
			}
		})
	}
}

func TestNormalizeQueryAllocs(t *testing.T) {
	s := &queryScratch{}
	dst := make([]byte, 0, 256)
	raw := "z=last&a=2&a=10&space=a%20b&encoded=%7E&empty="
	appendNormalizedQuery(dst, raw, s) // warm the scratch buffers
	if n := testing.AllocsPerRun(100, func() { appendNormalizedQuery(dst[:0], raw, s) }); n != 0 {
		t.Errorf("appendNormalizedQuery with warm scratch: %v allocs, want 0", n)
	}
}
