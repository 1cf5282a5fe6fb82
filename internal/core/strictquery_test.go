package core

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/tpcluster/tpcluster/internal/reason"
	"github.com/tpcluster/tpcluster/internal/transcript"
)

func TestCheckStrictQuery(t *testing.T) {
	tests := []struct {
		raw  string
		want error
	}{
		{"", nil},
		{"a=1", nil},
		{"a=1&b=2", nil},
		{"flag", nil},
		{"a=", nil},
		{"a=%2B1", nil},
		{"a=b%20c", nil},
		{"a=%3B", nil},
		{"a=x%26y%3Dz", nil},
		{"A=1&b=2", nil},
		{"a_b=1&a-b=2", nil},
		{"a]=1", nil},
		{"filter[status]=open&filter[owner]=me", nil},
		{"ids[0]=1&ids[1]=2", nil},
		{"a[x][y]=1&a[x][z]=2", nil},
		{"%C3%A9=1&e=2", nil},
		{"a=%FF", nil}, // invalid UTF-8: step 17's request_binding_mismatch
		{"a=%G1", nil}, // malformed escape: step 17 too

		{"a=b+c", errQueryPlus},
		{"a+b=1", errQueryPlus},
		{"+", errQueryPlus},
		{"a=1;b=2", errQuerySemicolon},
		{"a=1&b=2;", errQuerySemicolon},

		{"a=1&&b=2", errQueryEmpty},
		{"&a=1", errQueryEmpty},
		{"a=1&", errQueryEmpty},
		{"&", errQueryEmpty},
		{"=x", errQueryEmpty},
		{"%20=x", errQueryEmpty},
		{"[x]=1", errQueryEmpty},

		{"a=%00", errQueryNUL},
		{"%00=1", errQueryNUL},
		{"a%00b=1", errQueryNUL},

		{"a[b=1", errQueryBrackets},
		{"a[b]c=1", errQueryBrackets},
		{"a[[b]]=1", errQueryBrackets},
		{"a[b][=1", errQueryBrackets},

		{"a=1&a=2", errQueryDuplicate},
		{"a=1&a=1", errQueryDuplicate},
		{"a=1&%61=2", errQueryDuplicate},
		{"a=1&A=2", errQueryDuplicate},
		{"%C3%A9=1&%C3%89=2", errQueryDuplicate}, // é, É
		{"k=1&%E2%84%AA=2", errQueryDuplicate},   // k, KELVIN SIGN
		{"a.b=1&a_b=2", errQueryDuplicate},
		{"a%20b=1&a_b=2", errQueryDuplicate},
		{"%20a=1&a=2", errQueryDuplicate},
		{"a=1&a[]=2", errQueryDuplicate},
		{"a[]=1&a[]=2", errQueryDuplicate},
		{"a[]=1&a=2", errQueryDuplicate},
		{"a[x]=1&a[x]=2", errQueryDuplicate},
		{"a[x]=1&a[X]=2", errQueryDuplicate},
		{"a=1&a[x]=2", errQueryDuplicate},
		{"a[x]=1&a=2", errQueryDuplicate},
		{"a[x]=1&a[]=2", errQueryDuplicate},
		{"a%5Bx%5D=1&a[x]=2", errQueryDuplicate},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			if err := checkStrictQuery(tt.raw); !errors.Is(err, tt.want) {
				t.Errorf("checkStrictQuery(%q) = %v, want %v", tt.raw, err, tt.want)
			}
		})
	}
}

// TestQueryStrictRoute: query_strict applies to its route only, refuses
// before the passport is looked at or the ledger touched, and lets a plain
// query through.
func TestQueryStrictRoute(t *testing.T) {
	strict := route("orders.q", "GET", "/v1/q")
	strict["query_strict"] = true
	tests := []struct {
		name, url, routeID string
		want               reason.Code
	}{
		{"strict, plain query", "https://orders.example/v1/q?a=1&b=2", "orders.q", reason.Allowed},
		{"strict, duplicate key", "https://orders.example/v1/q?a=1&a=2", "orders.q", reason.RequestPathNoncanonical},
		{"strict, plus", "https://orders.example/v1/q?a=b+c", "orders.q", reason.RequestPathNoncanonical},
		{"lenient route, duplicate key", "https://orders.example/v1/orders/1?a=1&a=2", "orders.get", reason.Allowed},
		{"lenient route, plus", "https://orders.example/v1/orders/1?a=b+c", "orders.get", reason.Allowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.snap.Store(loadSnapshot(t, testPolicy(strict), testTrust(f.key.PublicKeyB64()), f.now))
			c := call{method: "GET", url: tt.url, routeID: tt.routeID}
			d := f.p.Decide(t.Context(), f.request(c))
			if d.Reason != tt.want {
				t.Fatalf("Decide(%s) = %q (%v), want %q", tt.name, d.Reason, d.Err, tt.want)
			}
			if n := f.ledger.calls.Load(); tt.want != reason.Allowed && n != 0 {
				t.Errorf("ledger called %d times for a strict-query denial", n)
			}
		})
	}
}

// FuzzStrictQuery: whatever query a strict route accepts (and the
// transcript can normalise), Go's url.ParseQuery, a form decoder, reads it
// without error as exactly one value per key, key for key as the
// transcript does (no '+' to turn into a space), and no two keys are the
// same name to a case-insensitive reader.
func FuzzStrictQuery(f *testing.F) {
	for _, s := range []string{"a=1&b=2", "a=1&a=2", "a=b+c", "a;b", "filter[x]=1&filter[y]=2", "a.b=1&a_b=2", "%61=1&a=2", "=", "&&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if checkStrictQuery(raw) != nil || strings.HasPrefix(raw, "?") {
			return
		}
		if _, err := transcript.NormalizeQuery(raw); err != nil {
			return // step 17 refuses it
		}
		if raw == "" {
			return
		}
		vals, err := url.ParseQuery(raw)
		if err != nil {
			t.Fatalf("accepted %q, ParseQuery: %v", raw, err)
		}
		pieces := strings.Split(raw, "&")
		if len(vals) != len(pieces) {
			t.Fatalf("accepted %q: %d pieces, ParseQuery reads %d keys", raw, len(pieces), len(vals))
		}
		var keys []string
		for k, vs := range vals {
			if len(vs) != 1 || k == "" {
				t.Fatalf("accepted %q: key %q has %d values", raw, k, len(vs))
			}
			keys = append(keys, k)
		}
		for i := range keys {
			for j := range i {
				a, b := strings.Split(keys[i], "[")[0], strings.Split(keys[j], "[")[0]
				if strings.EqualFold(a, b) && (!strings.Contains(keys[i], "[") || !strings.Contains(keys[j], "[")) {
					t.Fatalf("accepted %q: keys %q and %q share a name", raw, keys[i], keys[j])
				}
			}
		}
	})
}

// BenchmarkCheckStrictQuery: the cost a query_strict route adds, by number
// of pairs (each pair a distinct bracketed name, the most work per pair).
func BenchmarkCheckStrictQuery(b *testing.B) {
	for _, n := range []int{8, 1024} {
		var q strings.Builder
		for i := range n {
			if i > 0 {
				q.WriteByte('&')
			}
			fmt.Fprintf(&q, "filter%%5Bf%d%%5D[x]=v%d", i, i)
		}
		raw := q.String()
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if err := checkStrictQuery(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
