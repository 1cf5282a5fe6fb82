package e2e

import "testing"

// caddyWant is what a caller must get through the shipped Caddyfile in
// front of check mode for row c: Caddy's own answer where caddyOwn has one,
// proxy mode's where Caddy parses the bytes as verifierd's proxy mode does
// (both are Go's net/http, and check mode then decides as proxy mode
// would), nginx's otherwise.
func caddyWant(c hcase) want {
	if w, ok := caddyOwn[c.name]; ok {
		return w
	}
	if caddyAsProxy[c.name] {
		return c.proxy
	}
	return c.nginx
}

// caddyAsProxy are the rows where Caddy answers as proxy mode does, not as
// nginx: Go's HTTP server takes or refuses the same bytes (duplicate or
// folded framing fields, Expect, HTTP/0.9, OPTIONS *, userinfo in Host,
// header sizes up to the Caddyfile's 64 KB), drops the fields a caller's
// Connection names before the check (hop-by-hop, RFC 9110 §7.6.1), takes
// the absolute-form authority as the host (RFC 9112 §3.2.2), and passes on
// what nginx refuses itself for check mode to deny (a NUL in the path, two
// Authorization fields, a 7 KB passport, a lower-case method, PRI).
var caddyAsProxy = map[string]bool{
	"path %00":                                  true,
	"two Authorization":                         true,
	"CL and TE":                                 true,
	"double CL equal":                           true,
	"TE twice":                                  true,
	"TE obs-fold":                               true,
	"obs-fold in a header":                      true,
	"HTTP/0.9 request line":                     true,
	"Connection nominates a covered header":     true,
	"Connection nominates Authorization":        true,
	"Connection nominates the nonce":            true,
	"Connection nominates X-TrustPlane-Subject": true,
	"PRI preface":                               true,
	"Expect unknown":                            true,
	"absolute-form authority beats Host":        true,
	"Host with userinfo":                        true,
	"OPTIONS *":                                 true,
	"oversized passport":                        true,
	"70 KiB header":                             true,
	"16 KiB covered header":                     true,
	"10 KiB target":                             true,
	"method post lower case":                    true,
	"method gEt mixed case":                     true,
	// The Caddyfile reads the whole body before the check and answers a
	// body shorter than its Content-Length 400, as proxy mode does.
	"CL longer than the body sent": true,
}

// caddyOwn are the rows Caddy answers in its own way; each still allows
// nothing that was not verified.
var caddyOwn = map[string]want{
	// Caddy puts the target in X-Original-URI (and sends it to the app)
	// re-encoded, %C3%A9 for raw UTF-8 bytes: not what the caller signed.
	"path raw UTF-8": binding401,
	// Go stops reading at the bad chunk size: Caddy saw no body, check
	// mode hashed none against the signed body hash.
	"chunk size overflow": binding401,
	// Go skips a field line without a name: neither the check nor the app
	// sees it.
	"empty header name": ok,
	// Go takes CONNECT with an authority-form target; check mode has no
	// route for it.
	"CONNECT": noRoute,
	// The caller half-closes inside a chunked body: Go cancels the
	// request, the canceled check writes nothing, and Go answers an empty
	// 200 (no decision, no body); nothing reaches the app.
	"chunked without last chunk": http1(200),
}

// TestCaddyRowsExist fails on a name in caddyAsProxy or caddyOwn that is
// no row of hostileCases: a renamed row would silently lose its Caddy
// expectation.
func TestCaddyRowsExist(t *testing.T) {
	rows := map[string]bool{}
	for _, c := range hostileCases {
		rows[c.name] = true
	}
	for name := range caddyAsProxy {
		if !rows[name] {
			t.Errorf("caddyAsProxy names %q, which is no hostile row", name)
		}
	}
	for name := range caddyOwn {
		if !rows[name] {
			t.Errorf("caddyOwn names %q, which is no hostile row", name)
		}
		if caddyAsProxy[name] {
			t.Errorf("%q is in both caddyOwn and caddyAsProxy", name)
		}
	}
}
