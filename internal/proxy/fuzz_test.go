package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/signer"
	"github.com/tpcluster/tpcluster/internal/transcript"
)

// Fuzz tamper bits: what the fuzzer changes after the request was signed.
const (
	tamperLowerMethod     = 1 << iota // send the method in lower case
	tamperExtraHeader                 // append the extra header line, uncovered
	tamperChunked                     // send the body chunked, with the extra line as a trailer
	tamperUnknownKey                  // sign with a key no trust material names
	tamperBodyByte                    // flip the last body byte
	tamperQuery                       // append "&x" to the query on the wire
	tamperDupCovered                  // send the first covered header twice
	tamperTargetSemicolon             // replace the first '&' of the query by ';' on the wire
)

// fuzzRoutes are the rig's routes the fuzzer picks from: method and path
// prefix; a {id} route gets the fuzzed segment.
var fuzzRoutes = []struct{ id, method, path string }{
	{"orders.create", "POST", "/v1/orders"},
	{"orders.get", "GET", "/v1/orders/"},
	{"orders.delete", "DELETE", "/v1/orders/"},
	{"orders.keep", "POST", "/v1/keep"},
}

// FuzzProxy drives the whole proxy handler (real pipeline, real ledger on
// an embedded NATS server) with requests signed from the fuzzed parts and
// then tampered with, and checks on a recording upstream that:
//   - nothing signed by a key outside the trust material is forwarded;
//   - a forwarded request is the signed one: method, raw target byte for
//     byte, body, every covered header once with its signed value, no
//     trailers, no header the caller did not send beyond the verifier's
//     own (context, X-Request-Id, X-Forwarded-For/-Host/-Proto, the
//     transport's Accept-Encoding and Te), no caller forwarding header and
//     no uncovered override header unless the route keeps them.
//
// The seeds under testdata/fuzz/FuzzProxy run in plain go test.
func FuzzProxy(f *testing.F) {
	f.Add(uint8(0), "", "a=1&b=2", "Content-Type: application/json", []byte(`{"order":1}`), "X-Extra: 1", uint8(0))
	f.Add(uint8(1), "ord_1", "a=1;admin=1", "Idempotency-Key: k1", []byte(nil), "X-HTTP-Method-Override: DELETE", uint8(tamperExtraHeader))
	f.Add(uint8(2), "a%3Bb", "x=%3B", "", []byte(nil), "Transfer-Encoding: chunked", uint8(tamperLowerMethod))
	f.Add(uint8(0), "", "", "Content-Type: text/plain", []byte("hello"), "X-Evil: 1", uint8(tamperChunked))
	f.Add(uint8(3), "", "q=1", "", []byte("{}"), "X-Original-URL: /admin", uint8(tamperExtraHeader))
	f.Add(uint8(1), "ord_2", "a=1&b=2", "", []byte(nil), "", uint8(tamperTargetSemicolon))
	f.Add(uint8(0), "", "", "Content-Type: a/b", []byte("x"), "", uint8(tamperDupCovered))
	f.Add(uint8(1), "ord_3", "", "", []byte(nil), "", uint8(tamperUnknownKey))
	f.Add(uint8(0), "", "", "", []byte("abc"), "", uint8(tamperBodyByte))
	f.Add(uint8(1), "ord_4", "a=1", "", []byte(nil), "", uint8(tamperQuery))

	// A tampered framing (Transfer-Encoding beside Content-Length) leaves
	// the handler waiting for body bytes that never come: the read timeout
	// ends that well before the client gives up, so every request is over
	// when the next one starts.
	// The caller is a client, not a trusted proxy: its forwarding headers
	// count for nothing.
	r := newRig(f, func(c *Config) {
		c.BodyReadTimeout = time.Second
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}
	})
	stranger, err := signer.GenerateKey()
	if err != nil {
		f.Fatal(err)
	}
	addr := strings.TrimPrefix(r.srv.URL, "http://")

	f.Fuzz(func(t *testing.T, routeSel uint8, seg, query, headerBlock string, body []byte, extra string, tamper uint8) {
		rt := fuzzRoutes[int(routeSel)%len(fuzzRoutes)]
		path := rt.path
		if strings.HasSuffix(path, "/") {
			if seg == "" || !targetSafe(seg) || strings.ContainsAny(seg, "?") {
				return
			}
			path += seg
		}
		if !targetSafe(query) || len(body) > 900 {
			return
		}
		target := path
		if query != "" {
			target += "?" + query
		}
		hdrs := parseFuzzHeaders(headerBlock)
		if hdrs == nil || (extra != "" && !validHeaderLine(extra)) {
			return
		}

		key, kid := r.key, "k1"
		if tamper&tamperUnknownKey != 0 {
			key = stranger
		}
		tok, err := key.MintPassport(signer.PassportOptions{Issuer: pIssuer, Subject: pSubject, Audience: pAudience,
			TrustDomain: pDomain, KID: kid, IssuedAt: time.Now(), TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		s, err := key.Sign(tok, &signer.Request{Method: rt.method, Scheme: "http", Authority: addr,
			Path: path, RawQuery: query, Body: body, Headers: hdrs, RouteID: rt.id})
		if err != nil {
			return // the caller's signer refuses it (a malformed query escape)
		}

		// The wire form, then the tampering.
		method, wireTarget, wireBody := rt.method, target, body
		if tamper&tamperLowerMethod != 0 {
			method = strings.ToLower(method)
		}
		if tamper&tamperQuery != 0 {
			wireTarget += map[bool]string{true: "&x", false: "?x"}[query != ""]
		}
		if tamper&tamperTargetSemicolon != 0 {
			wireTarget = strings.Replace(wireTarget, "&", ";", 1)
		}
		if tamper&tamperBodyByte != 0 && len(wireBody) > 0 {
			wireBody = slices.Clone(wireBody)
			wireBody[len(wireBody)-1] ^= 1
		}
		var b bytes.Buffer
		fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, wireTarget, addr)
		for _, h := range hdrs {
			fmt.Fprintf(&b, "%s: %s\r\n", h.Name, h.Value)
		}
		if tamper&tamperDupCovered != 0 && len(hdrs) > 0 {
			fmt.Fprintf(&b, "%s: %s2\r\n", hdrs[0].Name, hdrs[0].Value)
		}
		for _, h := range s.Headers {
			fmt.Fprintf(&b, "%s: %s\r\n", h.Name, h.Value)
		}
		if tamper&tamperExtraHeader != 0 && extra != "" {
			b.WriteString(extra + "\r\n")
		}
		if tamper&tamperChunked != 0 {
			b.WriteString("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
			if len(wireBody) > 0 {
				fmt.Fprintf(&b, "%x\r\n%s\r\n", len(wireBody), wireBody)
			}
			b.WriteString("0\r\n")
			if extra != "" {
				b.WriteString(extra + "\r\n")
			}
			b.WriteString("\r\n")
		} else {
			fmt.Fprintf(&b, "Content-Length: %d\r\nConnection: close\r\n\r\n", len(wireBody))
			b.Write(wireBody)
		}

		before := r.upstreamCount()
		status := roundTripRaw(t, addr, b.Bytes())
		if r.upstreamCount() == before {
			if status == 200 {
				t.Fatalf("200 without reaching the upstream")
			}
			return
		}
		up, gotBody := r.last(t)
		if tamper&tamperUnknownKey != 0 {
			t.Fatalf("forwarded a request signed by a key outside the trust material")
		}
		if up.Method != rt.method {
			t.Errorf("upstream method %q, verified %q (sent %q)", up.Method, rt.method, method)
		}
		if up.RequestURI != target {
			t.Errorf("upstream target %q, signed %q (sent %q)", up.RequestURI, target, wireTarget)
		}
		if !bytes.Equal(gotBody, body) {
			t.Errorf("upstream body %q, signed %q", gotBody, body)
		}
		if len(up.Trailer) != 0 || len(up.TransferEncoding) != 0 {
			t.Errorf("upstream trailers %v, transfer coding %v", up.Trailer, up.TransferEncoding)
		}
		sent := map[string][]string{}
		for _, h := range hdrs {
			sent[foldName(h.Name)] = append(sent[foldName(h.Name)], h.Value)
		}
		for _, h := range hdrs { // covered: every caller header
			if got := up.Header.Values(h.Name); !slices.Equal(got, sent[foldName(h.Name)]) || len(got) != 1 {
				t.Errorf("upstream %s = %q, signed %q once", h.Name, got, h.Value)
			}
		}
		extraName, extraValue, _ := strings.Cut(extra, ":")
		extraValue = strings.TrimSpace(extraValue)
		for k, vs := range up.Header {
			f := foldName(k)
			switch {
			case sent[f] != nil:
			case isTrustPlaneName(k) && len(vs) == 1:
			case k == "X-Request-Id" || k == "Accept-Encoding" || (k == "Te" && vs[0] == "trailers"):
			case k == "Content-Length" && slices.Equal(vs, []string{fmt.Sprint(len(body))}):
			case k == "X-Forwarded-For" && slices.Equal(vs, []string{"127.0.0.1"}):
			case k == "X-Forwarded-Host" && slices.Equal(vs, []string{addr}):
			case k == "X-Forwarded-Proto" && slices.Equal(vs, []string{"http"}):
			case tamper&tamperExtraHeader != 0 && strings.EqualFold(k, extraName) && slices.Equal(vs, []string{extraValue}) &&
				!forwardingHeader(f) && (!overrideHeader(f) || rt.id == "orders.keep"):
				// An uncovered header the caller sent, passed on as sent.
			default:
				t.Errorf("upstream header %s: %q was not sent or not verified", k, vs)
			}
		}
	})
}

// targetSafe reports whether s can go into a request target on the wire
// as is (visible ASCII, no '#').
func targetSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// validHeaderLine reports whether l is "Name: value" with a token name and
// a value of visible ASCII and inner spaces.
func validHeaderLine(l string) bool {
	name, value, ok := strings.Cut(l, ":")
	if !ok || name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < ' ' && c != '\t') || c >= 0x7f {
			return false
		}
	}
	return true
}

// parseFuzzHeaders reads up to six caller headers, one per line. Names the
// verifier never covers or consumes itself are left out, so every header
// kept is covered. nil means the block is unusable.
func parseFuzzHeaders(block string) []transcript.Header {
	out := []transcript.Header{}
	seen := map[string]bool{}
	for l := range strings.SplitSeq(block, "\n") {
		if l == "" {
			continue
		}
		if !validHeaderLine(l) || len(out) == 6 {
			return nil
		}
		name, value, _ := strings.Cut(l, ":")
		value = strings.Trim(value, " \t")
		f := foldName(name)
		if seen[f] || neverCovered(f) || isTrustPlaneName(name) || forwardingHeader(f) || value == "" {
			continue
		}
		seen[f] = true
		out = append(out, transcript.Header{Name: name, Value: value})
	}
	return out
}

func neverCovered(f string) bool {
	switch f {
	case "host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer", "upgrade",
		"proxy-authorization", "proxy-connection", "authorization", "forwarded", "via", "x-request-id",
		"accept-encoding", "expect":
		return true
	}
	return false
}

// roundTripRaw writes req to addr and returns the answer's status (0 when
// the server closed without one).
func roundTripRaw(t *testing.T, addr string, req []byte) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(req); err != nil {
		return 0
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
