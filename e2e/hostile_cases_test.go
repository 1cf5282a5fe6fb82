package e2e

import (
	"strings"
	"time"

	"github.com/tpcluster/tpcluster/internal/reason"
	"github.com/tpcluster/tpcluster/internal/signer"
)

var (
	path400    = deny(reason.RequestPathNoncanonical)
	missing    = deny(reason.PassportMissing)
	malform    = deny(reason.PassportMalformed)
	binding401 = deny(reason.RequestBindingMismatch)
	proof401   = deny(reason.InvalidRequestProof)
	noRoute    = deny(reason.BundleRouteMissing)
	weakKey    = deny(reason.InsufficientKeyBinding)
)

// strict is a GET with query q on the query_strict route.
func strict(q string) hreq { return get("/v1/strict/s1" + q).rt("strict.get") }

// smuggled is an unsigned request that rows hide after or inside another,
// carrying the context header an upstream would trust.
const smuggled = "GET /v1/orders/smuggled HTTP/1.1\r\nHost: AUTH\r\nX-TrustPlane-Subject: spiffe://e2e.local/workload/admin\r\n\r\n"

const jsonBody = `{"order_id":"ord_1","amount":"42.00"}`

// hostileCases must pass on main today. Each row: name, request, then the
// answer in proxy mode and through nginx + check mode.
var hostileCases = []hcase{
	// Baselines: the honest shapes every hostile row varies.
	{"baseline GET", get("/v1/orders/b1"), ok, ok},
	{"baseline POST bound body", create(jsonBody), ok, binding401},
	{"baseline POST gateway body", gw(jsonBody), ok, ok},
	{"baseline no passport", get("/v1/orders/b2").unsign(), missing, missing},

	// Signer class escalation.
	{"software passport on hardware_local route", hw(jsonBody), weakKey, weakKey},
	{"software passport on remote_kms route", get("/v1/kms/k0").rt("kms.get"), weakKey, weakKey},
	{"broker attests hardware_local", hw(jsonBody).tok(brokered(brokerKID, "hardware_local")).kb("hardware_local"), ok, ok},
	{"broker attests remote_kms", get("/v1/kms/k1").rt("kms.get").tok(brokered(brokerKID, "remote_kms")).kb("remote_kms"), ok, ok},
	{"broker attests software on remote_kms route", get("/v1/kms/k2").rt("kms.get").tok(brokered(brokerKID, "software")), weakKey, weakKey},
	// The effective class (SPEC §2.1): a self-issued passport cannot raise
	// its own class; a capped broker cannot attest above its cap.
	{"self-issued passport claims hardware_local", hw(jsonBody).claims(binding("hardware_local")), weakKey, weakKey},
	{"self-issued passport claims attested_workload", hw(jsonBody).claims(binding("attested_workload")), weakKey, weakKey},
	{"self-issued remote_kms is forwarded as software", get("/v1/orders/k1").claims(binding("remote_kms")), ok, ok},
	{"self-issued remote_kms on remote_kms route", get("/v1/kms/k3").rt("kms.get").claims(binding("remote_kms")), weakKey, weakKey},
	{"capped broker attests hardware_local", hw(jsonBody).tok(brokered(cappedKID, "hardware_local")), weakKey, weakKey},
	{"capped broker's hardware_local is forwarded as remote_kms", get("/v1/kms/k4").rt("kms.get").tok(brokered(cappedKID, "hardware_local")).kb("remote_kms"), ok, ok},

	// Bodies where none is bound.
	{"GET with a signed body", get("/v1/orders/g1").withBody("x"), ok, binding401},
	{"GET Content-Length 0", get("/v1/orders/g3").fields(after("Host", "Content-Length", "0")), ok, ok},
	{"POST empty body on bound route", create("").fields(after("Host", "Content-Length", "0")), ok, ok},
	{"DELETE bodiless", hreq{method: "DELETE", target: "/v1/orders/d1", route: "orders.delete"}, ok, ok},
	{"tampered bound body", create(jsonBody).signs(func(sr *signer.Request) { sr.Body = []byte(`{"order_id":"ord_2"}`) }), binding401, binding401},

	// Queries: ';' is data (SPEC §3.3) and the target goes on unchanged.
	{"query %3B", get("/v1/orders/q2?a=1%3Badmin=1"), ok, ok},
	{"query reordered is the same transcript", get("/v1/orders/q4?b=2&a=1").signs(func(sr *signer.Request) { sr.RawQuery = "a=1&b=2" }), ok, ok},
	{"query + is not %20", get("/v1/orders/q5?a=b%20c").signs(func(sr *signer.Request) { sr.RawQuery = "a=b+c" }), binding401, binding401},
	{"query + and %2B share a transcript", get("/v1/orders/q6?a=b+c").signs(func(sr *signer.Request) { sr.RawQuery = "a=b%2Bc" }), ok, ok},
	{"query malformed escape", get("/v1/orders/q7?a=%zz").signs(func(sr *signer.Request) { sr.RawQuery = "a=%25zz" }), binding401, binding401},
	{"query not UTF-8", get("/v1/orders/q8?a=%FF").signs(func(sr *signer.Request) { sr.RawQuery = "a=%C3%BF" }), binding401, binding401},
	{"query duplicate keys", get("/v1/orders/q9?a=1&a=2"), ok, ok},
	{"query leading ?", get("/v1/orders/q10??a=1"), path400, path400},
	{"query tampered", get("/v1/orders/q11?amount=1").signs(func(sr *signer.Request) { sr.RawQuery = "amount=100" }), binding401, binding401},
	{"query %26 is data", get("/v1/orders/q14?a=1%26admin=1"), ok, ok},
	{"query empty pieces", get("/v1/orders/q12?&&a=1&"), ok, ok},
	{"bare trailing ? forwarded", get("/v1/orders/q13?"), ok, ok},

	// query_strict routes (SPEC-EXTENSIONS, step 4a).
	{"strict: plain query", strict("?a=1&b=%2B&c=%20"), ok, ok},
	{"strict: indexed list", strict("?a[0]=1&a[1]=2"), ok, ok},
	{"strict: literal +", strict("?a=b+c"), path400, path400},
	{"strict: literal ;", strict("?a=1;admin=1"), path400, path400},
	{"strict: duplicate key", strict("?a=1&a=2"), path400, path400},
	{"strict: duplicate key by escape", strict("?a=1&%61=2"), path400, path400},
	{"strict: duplicate key by case", strict("?a=1&A=2"), path400, path400},
	{"strict: PHP dot is underscore", strict("?a.b=1&a_b=2"), path400, path400},
	{"strict: empty piece", strict("?a=1&&b=2"), path400, path400},
	{"strict: empty key", strict("?=x"), path400, path400},
	{"strict: NUL", strict("?a=%00"), path400, path400},
	{"strict: repeated list", strict("?a[]=1&a[]=2"), path400, path400},
	{"strict: malformed escape is step 17", strict("?a=%zz").signs(func(sr *signer.Request) { sr.RawQuery = "a=%25zz" }), binding401, binding401},

	// Path parameters and path hygiene (SPEC §4).
	{"path param on a plain segment", get("/v1/files/a;b/c").rt("files.get"), ok, ok},
	{"path %2e%2e;", get("/v1/files/%2e%2e;/admin").rt("files.get"), path400, path400},
	{"path dot segment", get("/v1/orders/./x"), path400, path400},
	{"path dot-dot segment", get("/v1/files/a/../admin").rt("files.get"), path400, path400},
	{"path //", get("/v1/orders//x"), path400, path400},
	{"path leading //", get("//hostile.example/v1/orders/x"), path400, path400},
	{"path %2f", get("/v1/orders/a%2fb"), path400, path400},
	{"path %5c", get("/v1/orders/a%5cb"), path400, path400},
	{"path %00", get("/v1/orders/a%00"), path400, bad},
	{"path %2E", get("/v1/orders/%2E"), path400, path400},
	{"path malformed escape", get("/v1/orders/a%zz"), bad, bad},
	{"path truncated escape", get("/v1/orders/a%4"), bad, bad},
	{"path encoded letter", get("/v1/orders/%41bc"), ok, ok},
	{"path UTF-8 escapes", get("/v1/orders/caf%C3%A9"), ok, ok},
	{"path raw UTF-8", get("/v1/orders/caf\xc3\xa9"), ok, ok},
	{"path %26 and = are data", get("/v1/orders/a%26b%3Dc"), ok, ok},
	{"path upper case route", get("/V1/ORDERS/x"), noRoute, noRoute},
	{"path trailing slash", get("/v1/orders/x/"), noRoute, noRoute},
	{"path semicolon session id", get("/v1/orders/ord;jsessionid=1"), ok, ok},
	{"path tampered", get("/v1/orders/p1").signs(func(sr *signer.Request) { sr.Path = "/v1/orders/p2" }), binding401, binding401},
	// Dot and empty segments hidden behind path parameters (SPEC-EXTENSIONS).
	{"path ..;/..;/admin", get("/v1/files/..;/..;/admin/purge").rt("files.get"), path400, path400},
	{"path .;", get("/v1/files/.;/admin").rt("files.get"), path400, path400},
	{"path ..;x", get("/v1/files/..;x/admin").rt("files.get"), path400, path400},
	{"path ..%3B", get("/v1/files/..%3B/admin").rt("files.get"), path400, path400},
	{"path empty segment before ;", get("/v1/files/;x/admin").rt("files.get"), path400, path400},
	{"path ;jsessionid on an empty segment", get("/v1/orders/;jsessionid=1"), path400, path400},

	// Trailers are never forwarded.
	{"chunked POST", gw(jsonBody).chunk(), ok, ok},
	{"trailer X-TrustPlane-Subject", gw(jsonBody).chunk(kv{"X-TrustPlane-Subject", "spiffe://e2e.local/workload/admin"}), ok, ok},
	{"trailer Authorization", gw(jsonBody).chunk(kv{"Authorization", "Bearer hostile"}), ok, ok},

	// Method spellings.
	{"method GET on POST route", create(jsonBody).m("GET"), noRoute, noRoute},
	// A HEAD answer has no body: proxy mode's 404 carries no readable
	// reason; nginx adds X-TrustPlane-Reason.
	{"method HEAD is not GET", get("/v1/orders/m1").m("HEAD"), http1(404), noRoute},
	{"method PURGE", get("/v1/orders/m2").m("PURGE"), noRoute, noRoute},
	{"method tampered", hreq{method: "DELETE", target: "/v1/orders/m3", route: "orders.delete"}.signs(func(sr *signer.Request) { sr.Method = "GET"; sr.RouteID = "orders.get" }), binding401, binding401},

	// Forwarding headers can never be covered (SPEC §3.4). The rows on the
	// caller's forwarding values reaching the upstream are below, under
	// "What is verified is what is forwarded".
	{"covered X-Forwarded-For is never covered", get("/v1/orders/f5").h("X-Forwarded-For", "6.6.6.6"), binding401, binding401},
	{"covered Forwarded is never covered", get("/v1/orders/f6").h("Forwarded", "for=6.6.6.6"), binding401, binding401},

	// Duplicates of covered and wire headers.
	{"covered header twice", get("/v1/orders/d1").h("X-Tenant", "t1").fields(after("X-Tenant", "X-Tenant", "t2")), binding401, binding401},
	{"covered header twice, other spelling", get("/v1/orders/d2").h("X-Tenant", "t1").fields(after("X-Tenant", "x-tenant", "t2")), binding401, binding401},
	{"two Authorization", get("/v1/orders/d3").fields(after("Authorization", "Authorization", "Bearer hostile")), malform, bad},
	{"two nonces", get("/v1/orders/d4").fields(after("X-TrustPlane-Nonce", "X-TrustPlane-Nonce", "00")), proof401, proof401},
	{"two proofs", get("/v1/orders/d5").fields(after("X-TrustPlane-Proof", "X-TrustPlane-Proof", strings.Repeat("A", 86))), proof401, proof401},
	{"two Host", get("/v1/orders/d6").fields(after("Host", "Host", "hostile.example")), bad, bad},

	// Caller X-TrustPlane-* headers.
	{"spoofed X_TrustPlane_Subject", get("/v1/orders/t3").u("X_TrustPlane_Subject", "spiffe://e2e.local/workload/admin"), ok, ok},

	// Override headers, covered: the caller meant them, so they arrive.
	{"covered X-HTTP-Method-Override", get("/v1/orders/o1").h("X-HTTP-Method-Override", "DELETE"), ok, ok},

	// Smuggling and framing.
	// Go reads CL+TE by the chunked coding alone (RFC 9112 §6.3) and a
	// repeated equal length as one; either way the bytes verified are
	// the bytes forwarded, re-framed with one Content-Length.
	{"CL and TE", gw(jsonBody).chunk().fields(after("Transfer-Encoding", "Content-Length", "3")).then(smuggled), ok, bad},
	{"pipelined unsigned request", get("/v1/orders/pl1").then(smuggled), ok, ok},
	{"request hidden behind the body's length", gw(jsonBody).then(smuggled), ok, ok},
	{"request hidden in a chunk", gw(jsonBody).chunk().raw("0\r\n\r\n", "0\r\n\r\n"+smuggled), ok, ok},
	{"double CL equal", gw(jsonBody).fields(after("Content-Length", "Content-Length", itoa(len(jsonBody)))), ok, bad},
	{"double CL different", gw(jsonBody).fields(after("Content-Length", "Content-Length", "3")), bad, bad},
	{"CL +N", gw(jsonBody).fields(set("Content-Length", "+"+itoa(len(jsonBody)))), bad, bad},
	{"CL hex", gw(jsonBody).fields(set("Content-Length", "0x25")), bad, bad},
	{"CL negative", gw(jsonBody).fields(set("Content-Length", "-1")), bad, bad},
	{"CL list", gw(jsonBody).fields(set("Content-Length", itoa(len(jsonBody))+", "+itoa(len(jsonBody)))), bad, bad},
	{"TE chunked, identity", gw(jsonBody).chunk().fields(set("Transfer-Encoding", "chunked, identity")), http1(501), http1(501)},
	{"TE gzip, chunked", gw(jsonBody).chunk().fields(set("Transfer-Encoding", "gzip, chunked")), http1(501), http1(501)},
	{"TE xchunked", gw(jsonBody).chunk().fields(set("Transfer-Encoding", "xchunked")), http1(501), http1(501)},
	{"TE twice", gw(jsonBody).chunk().fields(after("Transfer-Encoding", "Transfer-Encoding", "chunked")), http1(501), bad},
	{"TE space before colon", gw(jsonBody).chunk().raw("Transfer-Encoding:", "Transfer-Encoding :"), bad, bad},
	// Go replaces an obs-fold by a space before it interprets or forwards
	// the field (RFC 9112 §5.2); nginx refuses it.
	{"TE obs-fold", gw(jsonBody).chunk().raw("Transfer-Encoding: chunked", "Transfer-Encoding:\r\n chunked"), ok, bad},
	{"obs-fold in a header", get("/v1/orders/s1").u("X-Fold", "a").sees("X-Fold", "a b").raw("X-Fold: a\r\n", "X-Fold: a\r\n b\r\n"), ok, bad},
	{"chunk extension", gw(jsonBody).chunk().raw("\r\n\r\n25\r\n", "\r\n\r\n25;ext=hostile\r\n"), ok, ok},
	{"CL with leading zeros", gw(jsonBody).fields(set("Content-Length", "000"+itoa(len(jsonBody)))), ok, ok},
	{"bare LF line ends", get("/v1/orders/s10").bareLF(), ok, ok},
	{"GET chunked signed body", get("/v1/orders/s11").withBody("x").chunk(), ok, binding401},
	{"TE: trailers request header", get("/v1/orders/s12").u("TE", "trailers"), ok, ok},
	{"Proxy-Authorization", get("/v1/orders/s13").u("Proxy-Authorization", "Basic aG9zdGlsZQ=="), ok, ok},
	{"space inside the target", get("/v1/orders/s14").raw("/v1/orders/s14 HTTP", "/v1/orders/s 14 HTTP"), bad, bad},
	{"chunk size overflow", gw(jsonBody).chunk().raw("\r\n\r\n25\r\n", "\r\n\r\nffffffffffffffffff25\r\n"), bad, bad},
	{"CL longer than the body sent", gw(jsonBody).half().fields(set("Content-Length", "100")), bad, closed},
	{"chunked without last chunk", gw(jsonBody).chunk().half().raw("0\r\n\r\n", ""), bad, closed},
	{"HTTP/1.1 without Host", get("/v1/orders/s2").fields(del("Host")), bad, bad},
	{"HTTP/2.0 request line", get("/v1/orders/s3").raw(" HTTP/1.1\r\n", " HTTP/2.0\r\n"), http1(505), http1(505)},
	{"HTTP/0.9 request line", get("/v1/orders/s4").raw(" HTTP/1.1\r\n", " HTTP/0.9\r\n"), http1(505), bad},
	{"NUL in a header value", get("/v1/orders/s5").u("X-Nul", "a\x00b"), bad, bad},
	{"bare CR in a header value", get("/v1/orders/s6").u("X-Cr", "a\rb"), bad, bad},
	{"header name with space", get("/v1/orders/s7").u("X Bad", "1"), bad, bad},
	{"empty header name", get("/v1/orders/s8").raw("\r\n\r\n", "\r\n: v\r\n\r\n"), bad, bad},
	{"target without slash", get("v1/orders/s9"), bad, bad},

	// Connection tricks: a nominated header is hop-by-hop, so it never
	// counts as covered and never reaches the upstream.
	{"Connection nominates a covered header", get("/v1/orders/c2").h("X-Tenant", "t1").u("Connection", "X-Tenant"), binding401, ok},
	{"Connection nominates Authorization", get("/v1/orders/c3").u("Connection", "Authorization"), missing, ok},
	{"Connection nominates the nonce", get("/v1/orders/c4").u("Connection", "X-TrustPlane-Nonce"), proof401, ok},
	{"Connection: close", get("/v1/orders/c5").u("Connection", "close"), ok, ok},
	{"Keep-Alive and Proxy-Connection", get("/v1/orders/c6").u("Keep-Alive", "timeout=5").u("Proxy-Connection", "keep-alive"), ok, ok},

	// Upgrades are never forwarded (docs/SPEC-EXTENSIONS.md).
	{"Upgrade h2c", get("/v1/orders/u1").u("Connection", "Upgrade, HTTP2-Settings").u("Upgrade", "h2c").u("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"), ok, ok},
	{"Upgrade websocket", get("/v1/orders/u2").u("Connection", "Upgrade").u("Upgrade", "websocket").u("Sec-WebSocket-Version", "13").u("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ok, ok},
	{"covered Upgrade is never covered", get("/v1/orders/u3").h("Upgrade", "h2c"), binding401, binding401},
	{"PRI preface", get("/v1/orders/u4").raw("GET /v1/orders/u4 HTTP/1.1\r\n", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), path400, bad},

	// Expect.
	{"Expect 100-continue", gw(jsonBody).u("Expect", "100-continue"), ok, ok},
	{"Expect unknown", gw(jsonBody).u("Expect", "hostile"), http1(417), ok},

	// Absolute form and authority.
	{"absolute-form target", get("http://AUTH/v1/orders/a1"), ok, ok},
	{"absolute-form authority beats Host", get("http://AUTH/v1/orders/a7").withHost("hostile.example"), ok, binding401},
	{"absolute-form https on a plain listener", get("https://AUTH/v1/orders/a8"), ok, ok},
	{"authority port tampered", get("/v1/orders/a2").signs(func(sr *signer.Request) { sr.Authority = "127.0.0.1:1" }), binding401, binding401},
	{"Host upper case", get("/v1/orders/a3").withHost("LOCALHOST"), ok, ok},
	{"Host with userinfo", get("/v1/orders/a4").withHost("user@127.0.0.1"), bad, ok},
	{"CONNECT", get("/v1/orders/a5").raw("GET /v1/orders/a5 HTTP/1.1", "CONNECT 127.0.0.1:9 HTTP/1.1"), path400, bad},
	// net/http answers OPTIONS * itself (200, no body); nothing is decided
	// or forwarded.
	{"OPTIONS *", get("/v1/orders/a6").raw("GET /v1/orders/a6 HTTP/1.1", "OPTIONS * HTTP/1.1"), http1(200), bad},

	// Nothing added on the way: the upstream reads only what was verified.
	{"no added Accept-Encoding", get("/v1/orders/ae1"), ok, ok},
	{"caller's Accept-Encoding passes unchanged", get("/v1/orders/ae2").u("Accept-Encoding", "br;q=1, identity;q=0"), ok, ok},
	{"request id on an allowed answer", get("/v1/orders/id1").u("X-Request-Id", "caller-id.1"), ok, ok},

	// Header name and value spellings.
	{"lower-case wire headers", get("/v1/orders/n1").fields(rename("Authorization", "authorization")).fields(rename("X-TrustPlane-Proof", "x-trustplane-proof")), ok, ok},
	{"upper-case wire headers", get("/v1/orders/n2").fields(rename("X-TrustPlane-Nonce", "X-TRUSTPLANE-NONCE")).fields(rename("X-TrustPlane-Transcript-SHA256", "X-TRUSTPLANE-TRANSCRIPT-SHA256")), ok, ok},
	{"BEARER scheme upper case", get("/v1/orders/n3").authz(func(t string) string { return t }).fields(func(fs []kv) []kv {
		return set("Authorization", strings.Replace(fieldValues(fs, "Authorization")[0], "Bearer ", "BEARER ", 1))(fs)
	}), ok, ok},
	{"Bearer with two spaces", get("/v1/orders/n4").authz(func(t string) string { return " " + t }), missing, missing},
	{"Basic scheme", get("/v1/orders/n5").fields(set("Authorization", "Basic aG9zdGlsZTpob3N0aWxl")), missing, missing},
	{"covered lower-case name", get("/v1/orders/n6").h("x-tenant", "t1"), ok, ok},
	{"covered value with spaces around", get("/v1/orders/n7").h("X-Tenant", "  t1 "), ok, ok},
	{"covered empty value", get("/v1/orders/n8").h("X-Tenant", ""), ok, ok},
	{"covered UTF-8 value", get("/v1/orders/n9").h("X-Tenant", "caf\xc3\xa9"), ok, ok},
	{"covered tab inside a value", get("/v1/orders/n15").h("X-Tenant", "t\t1"), ok, ok},
	{"100 covered headers", get("/v1/orders/n16").hmany(100), ok, ok},
	{"covered underscore name", get("/v1/orders/n10").h("X_Tenant", "t1"), ok, binding401},
	{"required header missing", get("/v1/tenant/r1").rt("tenant.get"), binding401, binding401},
	{"required header present", get("/v1/tenant/r2").rt("tenant.get").h("X-Tenant", "t1"), ok, ok},
	{"required header uncovered", get("/v1/tenant/r3").rt("tenant.get").u("X-Tenant", "t1"), binding401, binding401},
	{"no nonce", get("/v1/orders/n11").fields(del("X-TrustPlane-Nonce")), proof401, proof401},
	{"proof padded", get("/v1/orders/n12").fields(func(fs []kv) []kv {
		return set("X-TrustPlane-Proof", fieldValues(fs, "X-TrustPlane-Proof")[0]+"==")(fs)
	}), proof401, proof401},
	{"transcript digest upper case", get("/v1/orders/n13").fields(func(fs []kv) []kv {
		return set("X-TrustPlane-Transcript-SHA256", strings.ToUpper(fieldValues(fs, "X-TrustPlane-Transcript-SHA256")[0]))(fs)
	}), proof401, proof401},
	{"proof by another key", get("/v1/orders/n14").fields(set("X-TrustPlane-Proof", strings.Repeat("AAAA", 21)+"AA")), proof401, proof401},

	// JWS tricks.
	{"alg none", get("/v1/orders/j1").tok(func(s *suite, o *signer.PassportOptions) (string, *signer.Key) {
		return b64s(`{"alg":"none","typ":"JWT"}`) + "." + b64s(payload(s.w.caller, o)) + ".", s.w.caller
	}), malform, malform},
	{"alg HS256", get("/v1/orders/j2").tok(crafted(`{"alg":"HS256","kid":"caller-1","typ":"JWT"}`, nil, false)), malform, malform},
	{"alg eddsa lower case", get("/v1/orders/j3").tok(crafted(`{"alg":"eddsa","kid":"caller-1","typ":"JWT"}`, nil, false)), malform, malform},
	{"kid unknown", get("/v1/orders/j4").tok(crafted(`{"alg":"EdDSA","kid":"caller-2","typ":"JWT"}`, nil, false)), deny(reason.PassportKeyUnknown), deny(reason.PassportKeyUnknown)},
	{"kid swap to the caller's key", get("/v1/orders/j5").tok(crafted("", nil, true)), deny(reason.PassportSignatureInvalid), deny(reason.PassportSignatureInvalid)},
	{"no kid, own key", get("/v1/orders/j6").tok(crafted(`{"alg":"EdDSA","typ":"JWT"}`, nil, false)), ok, ok},
	// The issuer has several active keys (the brokers), so a kid-less
	// passport whose cnf is none of them has no key (SPEC §2).
	{"no kid, intruder key", get("/v1/orders/j7").tok(crafted(`{"alg":"EdDSA","typ":"JWT"}`, nil, true)), deny(reason.PassportKeyUnknown), deny(reason.PassportKeyUnknown)},
	{"b64 false", get("/v1/orders/j8").tok(crafted(`{"alg":"EdDSA","b64":false,"kid":"caller-1","typ":"JWT"}`, nil, false)), malform, malform},
	{"crit", get("/v1/orders/j9").tok(crafted(`{"alg":"EdDSA","crit":["exp"],"kid":"caller-1","typ":"JWT"}`, nil, false)), malform, malform},
	{"jku", get("/v1/orders/j10").tok(crafted(`{"alg":"EdDSA","jku":"https://hostile.example/k","kid":"caller-1","typ":"JWT"}`, nil, false)), malform, malform},
	{"embedded jwk", get("/v1/orders/j11").tok(crafted(`{"alg":"EdDSA","jwk":{"kty":"OKP","crv":"Ed25519","x":"AAAA"},"kid":"caller-1","typ":"JWT"}`, nil, false)), malform, malform},
	{"kid null", get("/v1/orders/j37").tok(crafted(`{"alg":"EdDSA","kid":null,"typ":"JWT"}`, nil, false)), malform, malform},
	{"x5u", get("/v1/orders/j38").tok(crafted(`{"alg":"EdDSA","kid":"caller-1","typ":"JWT","x5u":"https://hostile.example/c"}`, nil, false)), malform, malform},
	{"header not an object", get("/v1/orders/j39").tok(crafted(`["EdDSA"]`, nil, false)), malform, malform},
	{"payload not an object", get("/v1/orders/j40").authz(func(t string) string {
		p := strings.Split(t, ".")
		return p[0] + "." + b64s(`["orders-api"]`) + "." + p[2]
	}), malform, malform},
	{"exp string", get("/v1/orders/j41").tok(crafted("", func(p string) string {
		k := strings.Index(p, `"exp":`) + 6
		l := k + strings.IndexByte(p[k:], ',')
		return p[:k] + `"` + p[k:l] + `"` + p[l:]
	}, false)), malform, malform},
	{"typ jwt lower case", get("/v1/orders/j12").tok(crafted(`{"alg":"EdDSA","kid":"caller-1","typ":"jwt"}`, nil, false)), malform, malform},
	{"typ absent", get("/v1/orders/j13").tok(crafted(`{"alg":"EdDSA","kid":"caller-1"}`, nil, false)), ok, ok},
	{"duplicate alg in header", get("/v1/orders/j14").tok(crafted(`{"alg":"none","alg":"EdDSA","kid":"caller-1","typ":"JWT"}`, nil, false)), malform, malform},
	{"duplicate sub", get("/v1/orders/j15").tok(crafted("", rep(`"sub":`, `"sub":"spiffe://e2e.local/workload/admin","sub":`), false)), malform, malform},
	{"duplicate cnf member", get("/v1/orders/j16").tok(crafted("", rep(`"key_binding":"software"`, `"key_binding":"hardware_local","key_binding":"software"`), false)), malform, malform},
	{"escaped duplicate member", get("/v1/orders/j17").tok(crafted("", rep(`"sub":`, `"s\u0075b":"spiffe://e2e.local/workload/admin","sub":`), false)), malform, malform},
	{"signature flipped", get("/v1/orders/j18").authz(func(t string) string {
		b := []byte(t)
		if b[len(b)-2] == 'A' {
			b[len(b)-2] = 'B'
		} else {
			b[len(b)-2] = 'A'
		}
		return string(b)
	}), deny(reason.PassportSignatureInvalid), deny(reason.PassportSignatureInvalid)},
	{"signature removed", get("/v1/orders/j19").authz(func(t string) string { return t[:strings.LastIndexByte(t, '.')+1] }), malform, malform},
	{"payload padded", get("/v1/orders/j20").authz(func(t string) string {
		p := strings.Split(t, ".")
		return p[0] + "." + p[1] + "=." + p[2]
	}), malform, malform},
	{"four parts", get("/v1/orders/j21").authz(func(t string) string { return t + ".AAAA" }), malform, malform},
	{"JSON serialization", get("/v1/orders/j22").authz(func(t string) string {
		p := strings.Split(t, ".")
		return `{"protected":"` + p[0] + `","payload":"` + p[1] + `","signature":"` + p[2] + `"}`
	}), malform, malform},
	{"aud two members", get("/v1/orders/j23").tok(crafted("", rep(`"aud":"orders-api"`, `"aud":["orders-api","admin-api"]`), false)), malform, malform},
	{"aud one-member list", get("/v1/orders/j24").tok(crafted("", rep(`"aud":"orders-api"`, `"aud":["orders-api"]`), false)), ok, ok},
	{"iat string", get("/v1/orders/j25").tok(crafted("", func(p string) string {
		i := strings.Index(p, `"iat":`) + 6
		j := i + strings.IndexByte(p[i:], ',')
		return p[:i] + `"` + p[i:j] + `"` + p[j:]
	}, false)), malform, malform},
	{"iat float", get("/v1/orders/j26").tok(crafted("", func(p string) string {
		i := strings.Index(p, `"iat":`) + 6
		j := i + strings.IndexByte(p[i:], ',')
		return p[:j] + ".5" + p[j:]
	}, false)), malform, malform},
	{"jti too long", get("/v1/orders/j27").claims(func(o *signer.PassportOptions) { o.JTI = strings.Repeat("j", 257) }), malform, malform},
	{"sub with a control character", get("/v1/orders/j28").tok(crafted("", rep(`workload/orders"`, `workload/orders\u0000"`), false)), malform, malform},
	{"cnf key padded", get("/v1/orders/j29").tok(func(s *suite, o *signer.PassportOptions) (string, *signer.Key) {
		pub := s.w.caller.PublicKeyB64()
		return jwsBy(s.w.caller, stdHeader, strings.Replace(payload(s.w.caller, o), `"public_key_b64url":"`+pub+`"`, `"public_key_b64url":"`+pub+`="`, 1)), s.w.caller
	}), malform, malform},
	{"oversized passport", get("/v1/orders/j30").tok(crafted("", rep(`"trust_domain"`, `"pad":"`+strings.Repeat("p", 7000)+`","trust_domain"`), false)), malform, bad},
	{"audience other API", get("/v1/orders/j31").claims(func(o *signer.PassportOptions) { o.Audience = "admin-api" }), deny(reason.AudienceMismatch), deny(reason.AudienceMismatch)},
	{"issuer unknown", get("/v1/orders/j32").claims(func(o *signer.PassportOptions) { o.Issuer = "https://hostile.example" }), deny(reason.PassportKeyUnknown), deny(reason.PassportKeyUnknown)},
	{"subject other workload", get("/v1/orders/j33").claims(func(o *signer.PassportOptions) { o.Subject = "spiffe://e2e.local/workload/admin" }), deny(reason.SourceSubjectMismatch), deny(reason.SourceSubjectMismatch)},
	{"trust domain other", get("/v1/orders/j34").claims(func(o *signer.PassportOptions) { o.TrustDomain = "hostile.local" }), deny(reason.SourceTrustDomainMismatch), deny(reason.SourceTrustDomainMismatch)},
	{"key_binding unknown class", get("/v1/orders/j35").claims(binding("root")), malform, malform},
	{"key_binding upper case", get("/v1/orders/j36").claims(binding("SOFTWARE")), malform, malform},

	// Time edges (skew 30 s, lifetime 900 s).
	{"iat 20 s ahead, inside skew", get("/v1/orders/e1").claims(at(20*time.Second, 5*time.Minute)), ok, ok},
	{"iat 60 s ahead", get("/v1/orders/e2").claims(at(60*time.Second, 5*time.Minute)), deny(reason.PassportNotYetValid), deny(reason.PassportNotYetValid)},
	{"iat in 2100", get("/v1/orders/e3").claims(withClaims(func(o *signer.PassportOptions) {
		o.IssuedAt, o.TTL = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), time.Minute
	})), deny(reason.PassportNotYetValid), deny(reason.PassportNotYetValid)},
	{"expired 15 s ago, inside skew", get("/v1/orders/e4").claims(at(-200*time.Second, 185*time.Second)), ok, ok},
	{"expired 60 s ago", get("/v1/orders/e5").claims(at(-200*time.Second, 140*time.Second)), deny(reason.PassportExpired), deny(reason.PassportExpired)},
	{"lifetime 900 s", get("/v1/orders/e6").claims(at(0, 900*time.Second)), ok, ok},
	{"lifetime 901 s", get("/v1/orders/e7").claims(at(0, 901*time.Second)), deny(reason.PassportLifetimeExceeded), deny(reason.PassportLifetimeExceeded)},
	{"exp equal to iat", get("/v1/orders/e8").tok(crafted("", func(p string) string {
		i := strings.Index(p, `"iat":`) + 6
		j := i + strings.IndexByte(p[i:], ',')
		k := strings.Index(p, `"exp":`) + 6
		l := k + strings.IndexByte(p[k:], ',')
		return p[:k] + p[i:j] + p[l:]
	}, false)), malform, malform},

	// Replays.
	{"replay", get("/v1/orders/r1").again(), deny(reason.JTIReplay), deny(reason.JTIReplay)},
	{"replay, new nonce and target", get("/v1/orders/r2").againWith(func(r *hreq) { r.target = "/v1/orders/r2b" }), deny(reason.JTIReplay), deny(reason.JTIReplay)},
	{"replay after a denial burns nothing", get("/v1/orders/r3").signs(func(sr *signer.Request) { sr.Path = "/v1/orders/r3b" }).afterDenial(func(r *hreq) { r.sign = nil }), ok, ok},

	// Resource limits.
	{"70 KiB header", get("/v1/orders/l1").u("X-Huge", strings.Repeat("h", 70<<10)), http1(431), bad},
	{"16 KiB covered header", get("/v1/orders/l2").h("X-Big", strings.Repeat("b", 16<<10)), ok, bad},
	{"6 KiB target", get("/v1/orders/l3?q=" + strings.Repeat("q", 6<<10)), ok, ok},
	{"10 KiB target", get("/v1/orders/l4?q=" + strings.Repeat("q", 10<<10)), ok, http1(414)},
	{"300 uncovered headers", get("/v1/orders/l5").fields(many(300)), binding401, binding401},
	{"body 1 MiB", gw(strings.Repeat("b", 1<<20)), ok, ok},
	{"body 1 MiB + 1", gw(strings.Repeat("b", 1<<20+1)), deny(reason.RequestBodyTooLarge), http1(413)},
	{"2 MiB announced, no passport", gw("").unsign().half().fields(after("Host", "Content-Length", itoa(2<<20))), missing, http1(413)},

	// What is verified is what is forwarded (docs/SPEC-EXTENSIONS.md, HTTP).
	// The raw target goes upstream byte for byte (Go's ReverseProxy would
	// re-encode a query holding ';').
	{"query a=1;admin=1 forwarded exactly", get("/v1/orders/q1?a=1;admin=1"), ok, ok},
	{"query ;admin=1 forwarded exactly", get("/v1/orders/q3?;admin=1"), ok, ok},
	// Method spellings other than the upper case the transcript binds are
	// denied before step 1 (nginx refuses them itself).
	{"method post lower case", create(jsonBody).m("post"), binding401, bad},
	{"method gEt mixed case", get("/v1/orders/m4").m("gEt"), binding401, bad},
	// A single-valued header in two field lines is ambiguous: denied before
	// step 1. nginx replaces X-Forwarded-Host with its own.
	{"two uncovered Content-Type", get("/v1/orders/h1").u("Content-Type", "application/json").u("Content-Type", "text/plain"), binding401, binding401},
	{"empty then gzip Content-Encoding", get("/v1/orders/h2").u("Content-Encoding", "").u("Content-Encoding", "gzip"), binding401, binding401},
	{"two X-Forwarded-Host", get("/v1/orders/f7").u("X-Forwarded-Host", "AUTH").u("X-Forwarded-Host", "hostile.example"), binding401, ok},
	{"two Range", get("/v1/orders/h3").u("Range", "bytes=0-1").u("Range", "bytes=5-9"), binding401, binding401},
	// Forwarding headers are the hop's, never the caller's. Loopback callers
	// of proxy mode are trusted proxies by default, so there a caller's
	// X-Forwarded-Host/-Proto are read as the authority and scheme.
	{"X-Forwarded-Host from a trusted peer", get("/v1/orders/f1").u("X-Forwarded-Host", "hostile.example"), binding401, ok},
	{"X-Forwarded-Proto from a trusted peer", get("/v1/orders/f2").u("X-Forwarded-Proto", "https"), binding401, ok},
	{"X-Forwarded-For", get("/v1/orders/f3").u("X-Forwarded-For", "6.6.6.6"), ok, ok},
	{"Forwarded", get("/v1/orders/f4").u("Forwarded", "for=6.6.6.6;host=hostile.example;proto=https"), ok, ok},
	{"X-Real-IP", get("/v1/orders/f8").u("X-Real-IP", "6.6.6.6"), ok, ok},
	{"X-Forwarded-Prefix", get("/v1/orders/f9").u("X-Forwarded-Prefix", "/hostile"), ok, ok},
	{"X-Forwarded-Port and -Ssl", get("/v1/orders/f10").u("X-Forwarded-Port", "6666").u("X-Forwarded-Ssl", "on"), ok, ok},
	{"X-Forwarded-Server", get("/v1/orders/f11").u("X-Forwarded-Server", "hostile.example"), ok, ok},
	{"True-Client-IP and X-Client-IP", get("/v1/orders/f12").u("True-Client-IP", "6.6.6.6").u("X-Client-IP", "6.6.6.6"), ok, ok},
	// Override headers: dropped (proxy) or denied (check mode) unless covered.
	{"uncovered X-HTTP-Method-Override", get("/v1/orders/o2").u("X-HTTP-Method-Override", "DELETE").drop("x-http-method-override"), ok, binding401},
	{"uncovered X-HTTP-Method", get("/v1/orders/o3").u("X-HTTP-Method", "DELETE").drop("x-http-method"), ok, binding401},
	{"uncovered X-Method-Override", get("/v1/orders/o4").u("X-Method-Override", "PUT").drop("x-method-override"), ok, binding401},
	{"uncovered X-Original-URL", get("/v1/orders/o5").u("X-Original-URL", "/admin").drop("x-original-url"), ok, binding401},
	{"uncovered X-Rewrite-URL", get("/v1/orders/o6").u("X-Rewrite-URL", "/admin").drop("x-rewrite-url"), ok, binding401},
	{"covered X-Original-URL", get("/v1/orders/o7").h("X-Original-URL", "/v1/orders/o7"), ok, ok},
	// Check mode learns from nginx whether the original request had a body.
	{"GET with a body signed as empty", get("/v1/orders/g2").fields(after("Host", "Content-Length", "8")).raw("\r\n\r\n", "\r\n\r\nsmuggled"), binding401, binding401},
	{"DELETE chunked body signed as empty", hreq{method: "DELETE", target: "/v1/orders/d2", route: "orders.delete"}.chunk().raw("0\r\n\r\n", "5\r\nhello\r\n0\r\n\r\n").signs(func(sr *signer.Request) { sr.Body = nil }), binding401, binding401},
	// Check mode denies caller X-TrustPlane-* names other than the proof
	// headers: the gateway would pass them on (proxy mode strips them).
	{"spoofed X-TrustPlane-Subject", get("/v1/orders/t1").u("X-TrustPlane-Subject", "spiffe://e2e.local/workload/admin"), ok, binding401},
	{"spoofed x-trustplane-issuer", get("/v1/orders/t2").u("x-trustplane-issuer", "https://hostile.example"), ok, binding401},
	{"spoofed X-TrustPlane-Key-Binding", get("/v1/orders/t4").u("X-TrustPlane-Key-Binding", "attested_workload"), ok, binding401},
	{"spoofed X-TrustPlane-Route-Id twice", get("/v1/orders/t5").u("X-TrustPlane-Route-Id", "admin").u("X-TrustPlane-Route-Id", "admin2"), ok, binding401},
	{"covered X-TrustPlane-Subject", get("/v1/orders/t6").h("X-TrustPlane-Subject", "spiffe://e2e.local/workload/admin"), ok, binding401},
	{"spoofed X-TrustPlane-Status on a denial", get("/v1/orders/t7").unsign().u("X-TrustPlane-Status", "200").u("X-TrustPlane-Reason", "allowed"), missing, binding401},
	{"Connection nominates X-TrustPlane-Subject", get("/v1/orders/c1").u("X-TrustPlane-Subject", "spiffe://e2e.local/workload/admin").u("Connection", "X-TrustPlane-Subject"), ok, binding401},
	{"spoofed X-TrustPlane-Admin in check mode", get("/v1/orders/t9").u("X-TrustPlane-Admin", "1"), ok, binding401},
}

// pendingCases are rows that fail on main because the behaviour they demand
// waits for a fix on another branch. The suite asserts they STILL fail in
// the mode named, so each flips loudly when its fix lands and must move to
// hostileCases.
var pendingCases = []pcase{
	// Empty: every behaviour the rows demand is on main. A row whose fix is
	// on another branch goes here, with the mode it still fails in.
}
