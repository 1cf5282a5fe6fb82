package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/signer"
	"github.com/tpcluster/tpcluster/internal/transcript"
)

// hreq is one hostile request: what goes on the wire and what the caller
// signed. The zero edits give an honest, signed request; each case changes
// one thing. Rows build it with the chainable methods below.
type hreq struct {
	method, target string
	route          string // the route the caller signs for
	hdrs           []kv   // caller headers, covered (sent after Host)
	uncov          []kv   // caller headers, sent but not covered (after hdrs)
	body           []byte
	chunked        bool
	trailers       []kv
	unsigned       bool
	closeWrite     bool

	host  string                                                          // Host value; "" is the listener's authority
	sign  func(sr *signer.Request)                                        // edits what the caller signs
	pass  func(o *signer.PassportOptions)                                 // edits the passport claims
	token func(s *suite, o *signer.PassportOptions) (string, *signer.Key) // a crafted passport
	field func(fs []kv) []kv                                              // edits the field list after signing
	wire  func(raw string) string                                         // edits the final bytes

	// replay sends the request, checks it is allowed, then sends it again
	// (edited by replayEdit when set, under the same passport) for the
	// row's expectation.
	replay     bool
	replayEdit func(r *hreq)

	// firstDenied makes the first send of a replay a denial (which must
	// burn nothing) instead of an allow.
	firstDenied bool

	// next is a second, unsigned request in the same bytes (pipelined, or
	// hidden behind a Content-Length shorter than the body): its answer
	// must be no allow, and it must never reach the upstream.
	next string

	keyBinding string   // the X-TrustPlane-Key-Binding the upstream must get; "" is software
	dropped    []string // uncovered names the upstream must not get
	saw        []kv     // values the verifier read differently from the fields sent (obs-fold)
}

func get(target string) hreq { return hreq{method: "GET", target: target, route: "orders.get"} }

func post(target, route string, body string) hreq {
	return hreq{method: "POST", target: target, route: route, body: []byte(body),
		hdrs: []kv{{"Content-Type", "application/json"}}}
}

// create is a POST to the proxy-bound body route; gw one to the route whose
// body the gateway vouches for (nginx sends none to check mode).
func create(body string) hreq { return post("/v1/orders", "orders.create", body) }
func gw(body string) hreq     { return post("/v1/gw/orders", "orders.gateway-create", body) }

// hw is a POST to the route that requires hardware_local keys.
func hw(body string) hreq { return post("/v1/hw/orders", "orders.hw", body) }

func (r hreq) h(name, value string) hreq {
	r.hdrs = append(slices.Clip(r.hdrs), kv{name, value})
	return r
}
func (r hreq) u(name, value string) hreq {
	r.uncov = append(slices.Clip(r.uncov), kv{name, value})
	return r
}
func (r hreq) m(method string) hreq      { r.method = method; return r }
func (r hreq) rt(route string) hreq      { r.route = route; return r }
func (r hreq) unsign() hreq              { r.unsigned = true; return r }
func (r hreq) half() hreq                { r.closeWrite = true; return r }
func (r hreq) chunk(tr ...kv) hreq       { r.chunked, r.trailers = true, tr; return r }
func (r hreq) withHost(h string) hreq    { r.host = h; return r }
func (r hreq) kb(binding string) hreq    { r.keyBinding = binding; return r }
func (r hreq) drop(names ...string) hreq { r.dropped = names; return r }

// hmany adds n covered headers, as an SDK client covering all it sends.
func (r hreq) hmany(n int) hreq {
	for i := range n {
		r = r.h("X-Many-"+strconv.Itoa(i), "v"+strconv.Itoa(i))
	}
	return r
}

// then appends raw, a second request, after this one's bytes.
func (r hreq) then(raw string) hreq   { r.next = raw; return r }
func (r hreq) withBody(b string) hreq { r.body = []byte(b); return r }
func (r hreq) sees(name, value string) hreq {
	r.saw = append(slices.Clip(r.saw), kv{name, value})
	return r
}
func (r hreq) again() hreq { r.replay = true; return r }
func (r hreq) againWith(f func(*hreq)) hreq {
	r.replay, r.replayEdit = true, f
	return r
}
func (r hreq) afterDenial(f func(*hreq)) hreq {
	r.replay, r.replayEdit, r.firstDenied = true, f, true
	return r
}
func (r hreq) signs(f func(sr *signer.Request)) hreq         { r.sign = f; return r }
func (r hreq) claims(f func(o *signer.PassportOptions)) hreq { r.pass = f; return r }
func (r hreq) tok(f func(s *suite, o *signer.PassportOptions) (string, *signer.Key)) hreq {
	r.token = f
	return r
}
func (r hreq) fields(f func(fs []kv) []kv) hreq {
	prev := r.field
	r.field = func(fs []kv) []kv {
		if prev != nil {
			fs = prev(fs)
		}
		return f(fs)
	}
	return r
}

// raw replaces the first old in the wire bytes with new.
func (r hreq) raw(old, new string) hreq {
	prev := r.wire
	r.wire = func(s string) string {
		if prev != nil {
			s = prev(s)
		}
		return strings.Replace(s, old, new, 1)
	}
	return r
}

// bareLF ends every head line with LF alone (RFC 9112 §2.2 lets a
// recipient accept it).
func (r hreq) bareLF() hreq {
	prev := r.wire
	r.wire = func(s string) string {
		if prev != nil {
			s = prev(s)
		}
		head, body, _ := strings.Cut(s, "\r\n\r\n")
		return strings.ReplaceAll(head, "\r\n", "\n") + "\n\n" + body
	}
	return r
}

// built is a request ready to send, with what the verifier should have
// verified when it allows it.
type built struct {
	wire   []byte
	fields []kv // the field list sent (before wire edits)
	method string
	target string // origin form
	host   string
	body   []byte
	token  string
	key    *signer.Key
}

// build signs r for authority and serialises it. tok, when non-empty, is
// the passport to reuse (replays).
func (s *suite) build(t testing.TB, r hreq, authority, tok string, key *signer.Key) built {
	t.Helper()
	// "AUTH" in a target stands for the listener's authority.
	r.target = strings.ReplaceAll(r.target, "AUTH", authority)
	r.hdrs, r.uncov = substAuth(r.hdrs, authority), substAuth(r.uncov, authority)
	host := authority
	if r.host != "" {
		host = r.host
	}
	path, query, _ := strings.Cut(originForm(r.target), "?")
	sr := &signer.Request{
		Method: strings.ToUpper(strings.TrimSpace(r.method)), Scheme: "http", Authority: host,
		Path: path, RawQuery: query, Body: r.body, RouteID: r.route,
	}
	if absoluteAuthority(r.target) != "" {
		sr.Authority = absoluteAuthority(r.target)
	}
	for _, h := range r.hdrs {
		sr.Headers = append(sr.Headers, transcript.Header{Name: h.name, Value: h.value})
	}
	if r.sign != nil {
		r.sign(sr)
	}
	fs := []kv{{"Host", host}}
	fs = append(fs, r.hdrs...)
	fs = append(fs, r.uncov...)
	if !r.unsigned {
		if tok == "" {
			o := signer.PassportOptions{Issuer: wIssuer, Subject: wSubject, Audience: wAudience,
				TrustDomain: wDomain, KID: wKID, IssuedAt: time.Now(), TTL: 5 * time.Minute}
			if r.pass != nil {
				r.pass(&o)
			}
			key = s.w.caller
			if r.token != nil {
				tok, key = r.token(s, &o)
			} else {
				var err error
				if tok, err = s.w.caller.MintPassport(o); err != nil {
					t.Fatal(err)
				}
			}
		}
		signed, err := key.Sign(tok, sr)
		if err != nil {
			// The caller-side signer refuses to read a broken passport
			// (a float iat, a padded key). Sign with the honest one of
			// the same claims and send the broken one: the verifier must
			// stop at the passport before the proof matters.
			o := signer.PassportOptions{Issuer: wIssuer, Subject: wSubject, Audience: wAudience,
				TrustDomain: wDomain, KID: wKID, IssuedAt: time.Now(), TTL: 5 * time.Minute}
			honest, merr := key.MintPassport(o)
			if merr != nil {
				t.Fatal(merr)
			}
			if signed, err = key.Sign(honest, sr); err != nil {
				t.Fatal(err)
			}
			signed.Headers[0].Value = "Bearer " + tok
		}
		for _, h := range signed.Headers {
			fs = append(fs, kv{h.Name, h.Value})
		}
	}
	switch {
	case r.chunked:
		fs = append(fs, kv{"Transfer-Encoding", "chunked"})
	case len(r.body) > 0:
		fs = append(fs, kv{"Content-Length", strconv.Itoa(len(r.body))})
	}
	if r.field != nil {
		fs = r.field(slices.Clone(fs))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", r.method, r.target)
	for _, f := range fs {
		fmt.Fprintf(&b, "%s: %s\r\n", f.name, f.value)
	}
	b.WriteString("\r\n")
	if r.chunked {
		if len(r.body) > 0 {
			fmt.Fprintf(&b, "%x\r\n%s\r\n", len(r.body), r.body)
		}
		b.WriteString("0\r\n")
		for _, f := range r.trailers {
			fmt.Fprintf(&b, "%s: %s\r\n", f.name, f.value)
		}
		b.WriteString("\r\n")
	} else {
		b.Write(r.body)
	}
	out := b.String()
	if r.wire != nil {
		out = r.wire(out)
	}
	out += strings.ReplaceAll(r.next, "AUTH", authority)
	if a := absoluteAuthority(r.target); a != "" {
		host = a // RFC 9112 §3.2.2: the target's authority wins over Host
	}
	return built{wire: []byte(out), fields: fs, method: sr.Method, target: originForm(r.target),
		host: host, body: r.body, token: tok, key: key}
}

// substAuth returns fs with "AUTH" in each value replaced by authority.
func substAuth(fs []kv, authority string) []kv {
	out := make([]kv, len(fs))
	for i, f := range fs {
		out[i] = kv{f.name, strings.ReplaceAll(f.value, "AUTH", authority)}
	}
	return out
}

// tokenJTI returns the jti claim of a compact passport, "" if unreadable.
func tokenJTI(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct{ JTI string }
	_ = json.Unmarshal(raw, &c)
	return c.JTI
}

// originForm returns the path and query of an absolute-form target.
func originForm(target string) string {
	if _, rest, ok := strings.Cut(target, "://"); ok && !strings.HasPrefix(target, "/") {
		if i := strings.IndexAny(rest, "/?"); i >= 0 {
			return rest[i:]
		}
		return ""
	}
	return target
}

func absoluteAuthority(target string) string {
	if strings.HasPrefix(target, "/") {
		return ""
	}
	_, rest, ok := strings.Cut(target, "://")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		return rest[:i]
	}
	return rest
}

// Names never compared byte for byte: framing and hop-by-hop fields (each
// hop writes its own), the wire and context headers (checked apart), and
// the forwarding headers, which a hop sets itself (checked apart: never
// the caller's value).
var (
	hopNames = []string{"connection", "keep-alive", "proxy-connection", "te", "trailer",
		"transfer-encoding", "upgrade", "proxy-authorization", "proxy-authenticate",
		"content-length", "expect", "authorization", "x-request-id"}
	forwardingNames = []string{"forwarded", "x-real-ip", "x-client-ip", "true-client-ip", "x-cluster-client-ip"}
	contextHeaders  = []string{"x-trustplane-subject", "x-trustplane-issuer", "x-trustplane-trust-domain",
		"x-trustplane-jti", "x-trustplane-route-id", "x-trustplane-key-binding"}
)

func isForwarding(lname string) bool {
	return slices.Contains(forwardingNames, lname) || strings.HasPrefix(lname, "x-forwarded-")
}

func isTrustPlane(lname string) bool {
	return strings.HasPrefix(strings.ReplaceAll(lname, "_", "-"), "x-trustplane-")
}

// endToEnd groups the fields a hop must pass on unchanged by lower-case
// name, values in order, leaving out the names above, those the
// Connection field nominates (when the verifier honours it), and skip.
func endToEnd(fs []kv, nominate bool, skip func(lname string) bool) map[string][]string {
	nominated := map[string]bool{}
	for _, v := range fieldValues(fs, "Connection") {
		if !nominate {
			break
		}
		for n := range strings.SplitSeq(v, ",") {
			nominated[strings.ToLower(strings.TrimSpace(n))] = true
		}
	}
	out := map[string][]string{}
	for _, f := range fs {
		n := strings.ToLower(f.name)
		if slices.Contains(hopNames, n) || nominated[n] || isForwarding(n) || isTrustPlane(n) || skip(n) {
			continue
		}
		out[n] = append(out[n], strings.Trim(f.value, " \t"))
	}
	return out
}

// compare checks what the upstream received against what was verified:
// request line, every end-to-end field, the body, no trailers, exactly one
// of each context header from the decision, no caller forwarding value.
func compare(b built, r hreq, got rawSeen, m *mode, requestID string) []string {
	var p []string
	if want := b.method + " " + b.target + " HTTP/1.1"; got.line != want {
		p = append(p, fmt.Sprintf("upstream request line = %q, want %q", got.line, want))
	}
	if !bytes.Equal(got.body, b.body) {
		p = append(p, fmt.Sprintf("upstream body = %q, want %q", got.body, b.body))
	}
	if len(got.trailers) > 0 {
		p = append(p, fmt.Sprintf("upstream got trailers %q", got.trailers))
	}
	skip := func(n string) bool {
		// nginx drops fields whose names hold '_' (ignore_invalid_headers),
		// and the Caddyfile removes them, before the check and the app
		// alike: the verifier never saw them.
		return slices.Contains(r.dropped, n) || (m.nginx || m.caddy) && strings.Contains(n, "_")
	}
	// Check mode never sees the caller's Connection field (nginx sends its
	// own), so behind nginx the fields it nominates were verified like any
	// other; Caddy, like proxy mode, drops them as hop-by-hop.
	sent := endToEnd(b.fields, !m.nginx, skip)
	sent["host"] = []string{b.host}
	for _, f := range r.saw {
		sent[strings.ToLower(f.name)] = []string{f.value}
	}
	gotE := endToEnd(got.fields, true, skip)
	if !maps.EqualFunc(sent, gotE, slices.Equal) {
		p = append(p, fmt.Sprintf("upstream end-to-end fields = %q, want the verified %q", gotE, sent))
	}
	for _, n := range r.dropped {
		if v := fieldValues(got.fields, n); len(v) > 0 {
			p = append(p, fmt.Sprintf("upstream got %s = %q, an uncovered field that must be dropped", n, v))
		}
	}
	kb := r.keyBinding
	if kb == "" {
		kb = "software"
	}
	want := map[string]string{"x-trustplane-subject": wSubject, "x-trustplane-issuer": wIssuer,
		"x-trustplane-trust-domain": wDomain, "x-trustplane-route-id": r.route, "x-trustplane-key-binding": kb,
		"x-trustplane-jti": tokenJTI(b.token)}
	// SPEC §9: the request id goes upstream and back to the caller.
	if v := fieldValues(got.fields, "X-Request-Id"); requestID == "" || len(v) != 1 || v[0] != requestID {
		p = append(p, fmt.Sprintf("upstream X-Request-Id = %q, want exactly the answer's %q", v, requestID))
	}
	for _, f := range got.fields {
		if n := strings.ToLower(f.name); isTrustPlane(n) && !slices.Contains(contextHeaders, n) {
			p = append(p, fmt.Sprintf("upstream got %s: %q, not a context header", f.name, f.value))
		}
	}
	for _, n := range contextHeaders {
		v := fieldValues(got.fields, n)
		if len(v) != 1 || (want[n] != "" && v[0] != want[n]) || v[0] == "" {
			p = append(p, fmt.Sprintf("upstream %s = %q, want exactly one value %q", n, v, want[n]))
		}
	}
	for _, f := range b.fields {
		n := strings.ToLower(f.name)
		if !isForwarding(n) {
			continue
		}
		v := strings.Trim(f.value, " \t")
		if v == b.host || v == "127.0.0.1" || v == "http" {
			continue // the true value, which a hop sets itself: not the caller's word
		}
		if slices.Contains(fieldValues(got.fields, n), v) {
			p = append(p, fmt.Sprintf("upstream got the caller's %s: %q", f.name, f.value))
		}
	}
	return p
}
