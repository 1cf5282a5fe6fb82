package e2e

import (
	"strings"
	"time"

	"github.com/tpcluster/tpcluster/internal/signer"
)

// Field-list edits for the rows.

// after inserts name: value right after the first field named at.
func after(at, name, value string) func([]kv) []kv {
	return func(fs []kv) []kv {
		for i, f := range fs {
			if strings.EqualFold(f.name, at) {
				return append(fs[:i+1], append([]kv{{name, value}}, fs[i+1:]...)...)
			}
		}
		return append(fs, kv{name, value})
	}
}

// del removes every field named name.
func del(name string) func([]kv) []kv {
	return func(fs []kv) []kv {
		out := fs[:0]
		for _, f := range fs {
			if !strings.EqualFold(f.name, name) {
				out = append(out, f)
			}
		}
		return out
	}
}

// rename respells the first field named name.
func rename(name, spelling string) func([]kv) []kv {
	return func(fs []kv) []kv {
		for i := range fs {
			if strings.EqualFold(fs[i].name, name) {
				fs[i].name = spelling
				break
			}
		}
		return fs
	}
}

// set replaces the value of the first field named name.
func set(name, value string) func([]kv) []kv {
	return func(fs []kv) []kv {
		for i := range fs {
			if strings.EqualFold(fs[i].name, name) {
				fs[i].value = value
				break
			}
		}
		return fs
	}
}

// many returns n uncovered fields X-Pad-i.
func many(n int) func([]kv) []kv {
	return func(fs []kv) []kv {
		for i := range n {
			fs = append(fs, kv{"X-Pad-" + strings.Repeat("p", i%7) + string(rune('a'+i%26)) + itoa(i), "v"})
		}
		return fs
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func withClaims(f func(o *signer.PassportOptions)) func(o *signer.PassportOptions) { return f }

func at(d time.Duration, ttl time.Duration) func(o *signer.PassportOptions) {
	return func(o *signer.PassportOptions) { o.IssuedAt, o.TTL = time.Now().Add(d), ttl }
}

func binding(kb string) func(o *signer.PassportOptions) {
	return func(o *signer.PassportOptions) { o.KeyBinding = kb }
}
