package core

import (
	"bytes"
	"testing"

	"github.com/tpcluster/tpcluster/internal/reason"
)

// FuzzDecide mutates the DERIVED request (method, path, query, authority,
// body, one added header) and checks the property the whole pipeline
// exists for: whatever the fuzzer finds, a request is allowed only if
// every bound part is exactly what the caller signed. Nothing may panic.
func FuzzDecide(f *testing.F) {
	v := loadDerived(f)
	fx := newFixture(f, func(c *Config) { c.Ledger = acceptLedger{} })
	orig := derivedRequest(f, v)
	f.Add("POST", "/v1/orders", "", "orders.example", []byte(v.HTTPRequest.BodyUTF8), "X-Extra", "x")
	f.Add("POST", "/v1/orders/", "a=1", "ORDERS.example", []byte(`{}`), "Content-Type", "text/plain")
	f.Add("post", "/v1/%6Frders", "", "orders.example:443", []byte(v.HTTPRequest.BodyUTF8), "X-Trustplane-Nonce", "n")
	f.Fuzz(func(t *testing.T, method, path, query, authority string, body []byte, name, value string) {
		r := *orig
		r.Header = make(map[string][]string, len(orig.Header)+1)
		for k, vs := range orig.Header {
			r.Header[k] = append([]string(nil), vs...)
		}
		r.Method, r.RawPath, r.RawQuery, r.Authority, r.Body = method, path, query, authority, body
		if name != "" {
			k := canonicalKey(name)
			r.Header[k] = append(r.Header[k], value)
		}
		d := fx.p.Decide(t.Context(), &r)
		if d.Reason != reason.Allowed {
			if d.Outcome == Allow {
				t.Fatalf("outcome allow with reason %q", d.Reason)
			}
			return
		}
		// Allowed: every bound part must be what was signed. Method,
		// scheme and authority are compared as transcript-v1 folds them.
		if upperASCII(trimASCII(method)) != "POST" || path != "/v1/orders" || query != "" ||
			lowerASCII(trimASCII(authority)) != "orders.example" || !bytes.Equal(body, orig.Body) {
			t.Fatalf("allowed a request that differs from the signed one: %q %q ?%q host %q body %q", method, path, query, authority, body)
		}
	})
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}
