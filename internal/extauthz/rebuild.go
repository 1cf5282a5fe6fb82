package extauthz

import (
	"errors"
	"net/http"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/proxy"
	"github.com/tpcluster/tpcluster/internal/reason"
)

// partialBodyHeader is the header Envoy adds to a CheckRequest whose body
// it buffered (with_request_body): "true" when the body was cut at
// max_request_bytes (allow_partial_message), else "false". Envoy drops a
// caller's header of that name before it adds its own.
const partialBodyHeader = "x-envoy-auth-partial-body"

// hint is a kind of Envoy misconfiguration a CheckRequest shows.
type hint int

const (
	hintNoBody      hint = iota // with_request_body missing: a body was not sent
	hintStringBody              // pack_as_bytes missing: the body came as a string
	hintMergedHdrs              // encode_raw_headers missing: headers came merged
	hintPartialBody             // max_request_bytes below --max-body-bytes, allow_partial_message on
	hintKinds
)

// hintText is what the operator is told, once per kind.
var hintText = [hintKinds]string{
	hintNoBody:      "Envoy sent no body for a request that had one: set with_request_body (max_request_bytes at least --max-body-bytes, pack_as_bytes: true) on the ext_authz filter, or body-bound routes are denied",
	hintStringBody:  "Envoy sent the body as a string: set with_request_body.pack_as_bytes: true, or bodies that are not UTF-8 never reach verifierd and Envoy answers its status_on_error",
	hintMergedHdrs:  "Envoy sent merged headers: set encode_raw_headers: true on the ext_authz filter, or a repeated covered header cannot be rebuilt byte for byte and is denied",
	hintPartialBody: "Envoy cut a body at with_request_body.max_request_bytes (allow_partial_message: true): raise max_request_bytes to --max-body-bytes, or body-bound routes with shorter bodies are denied",
}

// hintDetail is the detail code a denial gets when a hint explains it.
var hintDetail = [hintKinds]reason.Detail{
	hintNoBody:      reason.DetailEnvoyWithRequestBody,
	hintStringBody:  reason.DetailEnvoyPackAsBytes,
	hintMergedHdrs:  reason.DetailEnvoyEncodeRawHeaders,
	hintPartialBody: reason.DetailEnvoyPartialMessage,
}

// logHint logs the hint of kind k, the first time only.
func (s *Server) logHint(k hint) {
	s.hints[k].Do(func() {
		s.log.Warn("envoy ext_authz configuration", "hint", hintText[k], "detail_code", hintDetail[k].String())
	})
}

// rebuild turns a CheckRequest into the request Envoy is asking about,
// from attributes.request.http as Envoy documents it: method, path (the
// raw request target, query included), host (:authority), scheme, headers
// from header_map (encode_raw_headers: raw_value bytes, repeated names
// kept) or headers (merged: Envoy joins a repeated name's values with
// ","; lower-case names), body from raw_body (pack_as_bytes) or body. A
// message without those attributes comes back Malformed. Every hint the
// message shows is logged once.
func (s *Server) rebuild(req *authv3.CheckRequest) *proxy.GatewayRequest {
	httpReq := req.GetAttributes().GetRequest().GetHttp()
	if httpReq == nil {
		return &proxy.GatewayRequest{Malformed: errors.New("the CheckRequest has no attributes.request.http"),
			MalformedDetail: reason.DetailGatewayMessage}
	}
	gr := &proxy.GatewayRequest{
		Method:    httpReq.GetMethod(),
		Scheme:    strings.ToLower(strings.TrimSpace(httpReq.GetScheme())),
		Authority: httpReq.GetHost(),
		Target:    httpReq.GetPath(),
	}
	var partial string
	hdr := http.Header{}
	merged := false
	add := func(k, v string) {
		k = strings.ToLower(k)
		switch {
		case strings.HasPrefix(k, ":"):
			// Pseudo-headers (:authority, :path, :method, :scheme) are
			// the request line, read from their own fields; never a
			// covered header.
		case k == partialBodyHeader:
			partial = v
		case k == "x-request-id":
			// Envoy's connection manager makes or replaces it
			// (generate_request_id, preserve_external_request_id): the
			// gateway's, not a header the caller could cover. It names the
			// decision, so Envoy's logs and the audit event meet.
			gr.RequestID = v
		case strings.HasPrefix(k, "x-envoy-"):
			// Envoy's own (and stripped from external callers).
		default:
			hdr.Add(k, v)
		}
	}
	if hm := httpReq.GetHeaderMap(); hm != nil && len(hm.GetHeaders()) > 0 {
		for _, h := range hm.GetHeaders() {
			v := string(h.GetRawValue())
			if len(h.GetRawValue()) == 0 {
				v = h.GetValue()
			}
			add(h.GetKey(), v)
		}
		if v, ok := httpReq.GetHeaders()[partialBodyHeader]; ok && partial == "" {
			// Envoy versions differ in where they put their own flag.
			partial = v
		}
	} else {
		merged = true
		for k, v := range httpReq.GetHeaders() {
			add(k, v)
		}
	}
	gr.Header, gr.HeadersMerged = hdr, merged
	if gr.Method == "" || gr.Target == "" {
		gr.Malformed, gr.MalformedDetail = errors.New("the CheckRequest's http request has no method or path"), reason.DetailGatewayMessage
		return gr
	}
	if gr.Scheme == "" {
		gr.Scheme = "http"
	}

	kinds := map[hint]bool{}
	if merged && len(hdr) > 0 {
		kinds[hintMergedHdrs] = true
	}
	gr.OriginalLength = originalLength(hdr)
	switch {
	case len(httpReq.GetRawBody()) > 0:
		gr.Body = httpReq.GetRawBody()
	case httpReq.GetBody() != "":
		gr.Body = []byte(httpReq.GetBody())
		kinds[hintStringBody] = true
	}
	switch partial {
	case "true":
		gr.BodyPartial = true
		kinds[hintPartialBody] = true
	case "false":
		// with_request_body is on and the body is whole.
	default:
		// No partial-body header: Envoy buffered no body, because the
		// request had none or with_request_body is off. A request that
		// says it had one was not seen.
		if len(gr.Body) == 0 && hadBody(hdr, httpReq.GetSize()) {
			gr.BodyUnseen = true
			kinds[hintNoBody] = true
		}
	}
	for k := range kinds {
		s.logHint(k)
	}
	gr.Refine = func(d *core.Decision) { refine(d, kinds, hdr) }
	return gr
}

// hadBody reports whether the original request had a body: a
// Content-Length above zero (or one that cannot be read: doubt means a
// body), a Transfer-Encoding, or a size above zero (Envoy's bytes received
// so far; -1 when unknown).
func hadBody(h http.Header, size int64) bool {
	if v := h.Values("Transfer-Encoding"); len(v) > 0 && strings.TrimSpace(strings.Join(v, "")) != "" {
		return true
	}
	if _, ok := h["Content-Length"]; ok {
		return originalLength(h) != 0
	}
	return size > 0
}

// refine names the Envoy setting behind a pipeline denial the CheckRequest's
// shape explains: a body the verifier did not see (with_request_body, or a
// partial body), a body hash that differs when the body came as a string
// (pack_as_bytes), a transcript that differs when merged headers hold a
// joined value (encode_raw_headers).
func refine(d *core.Decision, kinds map[hint]bool, hdr http.Header) {
	name := func(k hint) {
		d.Detail = hintDetail[k]
		d.Err = errors.Join(d.Err, errors.New(hintText[k]))
	}
	switch {
	case d.Detail == reason.DetailBodyUnseen && kinds[hintPartialBody]:
		name(hintPartialBody)
	case d.Detail == reason.DetailBodyUnseen && kinds[hintNoBody]:
		name(hintNoBody)
	case d.Detail == reason.DetailBodyHash && kinds[hintStringBody]:
		name(hintStringBody)
	case (d.Detail == reason.DetailTranscript || d.Detail == reason.DetailHeaderRepeated) &&
		kinds[hintMergedHdrs] && joined(hdr):
		name(hintMergedHdrs)
	}
}

// joined reports whether a merged header value may be several joined: it
// holds a comma, and the search may have tried it as a covered header.
func joined(h http.Header) bool {
	for _, vs := range h {
		for _, v := range vs {
			if strings.Contains(v, ",") {
				return true
			}
		}
	}
	return false
}
