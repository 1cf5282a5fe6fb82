package signer

import (
	"bytes"
	"compress/gzip"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/tpcluster/tpcluster/internal/transcript"
)

// Client is an HTTP client library as far as request proofs are concerned:
// what it adds to a signed request on its own, which the caller did not
// cover (SPEC §3.4). A verifier must find the covered set despite them.
type Client int

const (
	// Raw adds nothing: the request goes out exactly as signed.
	Raw Client = iota
	// PythonURLlib is urllib.request, which the Python SDK's
	// ProtectedClient sends with: it adds Content-Type:
	// application/x-www-form-urlencoded to a body that has none,
	// Content-Length, User-Agent, Accept-Encoding: identity, Connection:
	// close and Host, and sends every name as str.capitalize() spells it
	// ("X-trustplane-nonce").
	PythonURLlib
	// NodeFetch is Node's built-in fetch (undici): it adds accept,
	// accept-language, sec-fetch-mode, user-agent and accept-encoding,
	// Content-Length for a body, host and connection, all in lower case.
	NodeFetch
)

// String returns the client's name.
func (c Client) String() string {
	switch c {
	case Raw:
		return "raw"
	case PythonURLlib:
		return "python-urllib"
	case NodeFetch:
		return "node-fetch"
	}
	return "Client(" + strconv.Itoa(int(c)) + ")"
}

// Added returns the headers c adds to r on its own, in the order it sends
// them. A name the caller already set is not added again.
func (c Client) Added(r *Request) []transcript.Header {
	var out []transcript.Header
	add := func(name, value string) {
		for _, h := range r.Headers {
			if strings.EqualFold(strings.TrimSpace(h.Name), name) {
				return
			}
		}
		out = append(out, transcript.Header{Name: name, Value: value})
	}
	switch c {
	case PythonURLlib:
		if len(r.Body) > 0 {
			add("Content-Type", "application/x-www-form-urlencoded")
			add("Content-Length", strconv.Itoa(len(r.Body)))
		}
		add("Host", r.Authority)
		add("User-Agent", "Python-urllib/3.12")
		add("Accept-Encoding", "identity")
		add("Connection", "close")
	case NodeFetch:
		if len(r.Body) > 0 {
			add("content-length", strconv.Itoa(len(r.Body)))
		}
		add("host", r.Authority)
		add("connection", "keep-alive")
		add("accept", "*/*")
		add("accept-language", "*")
		add("sec-fetch-mode", "cors")
		add("user-agent", "node")
		add("accept-encoding", "gzip, deflate")
	}
	return out
}

// Wire returns every header c sends for r signed as s, in send order and
// spelled as c spells names: the caller's headers, the five wire headers,
// then c's own.
func (c Client) Wire(r *Request, s *Signed) []transcript.Header {
	out := make([]transcript.Header, 0, len(r.Headers)+len(s.Headers)+8)
	out = append(out, r.Headers...)
	out = append(out, s.Headers...)
	out = append(out, c.Added(r)...)
	for i := range out {
		switch c {
		case PythonURLlib:
			out[i].Name = capitalize(out[i].Name)
		case NodeFetch:
			out[i].Name = strings.ToLower(out[i].Name)
		}
	}
	return out
}

// capitalize is Python's str.capitalize for ASCII names, which urllib
// applies to every header name it is given.
func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + strings.ToLower(s[1:])
}

// HeaderMap returns hs as net/http's server hands them to a handler: keys
// in canonical MIME form, values in order. An http.Header converts to it.
func HeaderMap(hs []transcript.Header) map[string][]string {
	m := make(map[string][]string, len(hs))
	for _, h := range hs {
		k := textproto.CanonicalMIMEHeaderKey(h.Name)
		m[k] = append(m[k], h.Value)
	}
	return m
}

// Received returns r as a verifier receives it from client c after signing
// as s: the request target as sent, the headers of [Client.Wire] and the
// hash of the body.
func Received(c Client, r *Request, s *Signed) *transcript.Request {
	return &transcript.Request{
		Method: r.Method, Scheme: r.Scheme, Authority: r.Authority, Path: r.Path, RawQuery: r.RawQuery,
		Header: HeaderMap(c.Wire(r, s)), BodySHA256: transcript.BodySHA256(r.Body),
	}
}

// Shape is a request shaped as a real client sends it.
type Shape struct {
	Name    string
	Client  Client
	Request Request
}

// Shapes returns the requests SPEC §3.4 asks tests to include, for the
// orders API at https://orders.example (routes orders.create, POST
// /v1/orders, and orders.search, GET /v1/orders/search):
//   - python-post-no-content-type: a ProtectedClient POST whose caller set
//     no Content-Type, so urllib adds an uncovered one;
//   - python-post-idempotency-key: a ProtectedClient POST with
//     Content-Type and Idempotency-Key, both covered;
//   - python-post-gzip: a ProtectedClient POST with Content-Encoding: gzip;
//   - raw-x-ignore-me: a low-level signature covering Content-Type and the
//     nonce while X-Ignore-Me is sent uncovered (the DERIVED vector);
//   - node-fetch-get: a fetch GET with a query, covering only the nonce.
//
// Each call returns fresh values; nonces are left empty (random).
func Shapes() []Shape {
	body := []byte(`{"order_id":"ord_123","amount":"42.00"}`)
	// The gzip body really is gzip, so the request is honest about its
	// encoding.
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write(body) // a bytes.Buffer does not fail
	zw.Close()
	post := func(headers ...transcript.Header) Request {
		return Request{
			Method: "POST", Scheme: "https", Authority: "orders.example", Path: "/v1/orders",
			Body: body, Headers: headers, RouteID: "orders.create",
		}
	}
	h := func(name, value string) transcript.Header { return transcript.Header{Name: name, Value: value} }

	gz := post(h("content-type", "application/json"), h("content-encoding", "gzip"))
	gz.Body = zb.Bytes()
	raw := post(h("Content-Type", "application/json"), h("X-Ignore-Me", "not-covered"))
	raw.Covered = []string{"content-type"}
	return []Shape{
		{"python-post-no-content-type", PythonURLlib, post()},
		{"python-post-idempotency-key", PythonURLlib, post(h("content-type", "application/json"), h("idempotency-key", "idem-7f3a"))},
		{"python-post-gzip", PythonURLlib, gz},
		{"raw-x-ignore-me", Raw, raw},
		{"node-fetch-get", NodeFetch, Request{
			Method: "GET", Scheme: "https", Authority: "orders.example", Path: "/v1/orders/search",
			RawQuery: "status=open&limit=10", RouteID: "orders.search",
		}},
	}
}
