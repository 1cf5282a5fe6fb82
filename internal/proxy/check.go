package proxy

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/reason"
)

// serveCheck is check mode for gateways (SPEC §10.2): the gateway passes the
// original method, URI, host and proto in headers, and gets 200 with the
// context headers, or 401/403 with the real code and status in headers.
func (h *Handler) serveCheck(w http.ResponseWriter, r *http.Request) {
	reqID := requestID(r)
	if !trusted(h.cfg.TrustedProxies, r) {
		// Before step 1: an untrusted peer could forge every X-Original-*.
		d := h.recordEarly(r.Context(), &Record{RequestID: reqID, Method: r.Method}, reason.GatewayNotTrusted, reason.DetailUntrustedPeer,
			errors.New("check request from a peer outside --trusted-proxies"))
		writeCheckDeny(w, &d, reqID)
		return
	}
	method := r.Header.Get("X-Original-Method")
	if method == "" {
		method = r.Method
	}
	path, query := splitTarget(r.Header.Get("X-Original-Uri"))
	rec := &Record{RequestID: reqID, Method: method, Path: path}
	// The gateway's own headers are never covered (SPEC §10.2); the
	// X-Forwarded-* names are never covered anyway (SPEC §3.4). Other
	// X-Original-* names (X-Original-URL) are the caller's.
	hdr := make(http.Header, len(r.Header))
	for k, v := range r.Header {
		if !gatewayHeader(k) {
			hdr[k] = v
		}
	}
	if detail, err := preCheck(method, hdr); err != nil {
		h.denyEarly(w, r, rec, reason.RequestBindingMismatch, detail, err, true)
		return
	}
	if foreignTrustPlaneHeader(hdr) {
		// The gateway forwards the caller's headers as they are, and cannot
		// remove a name pattern (nginx): an X-TrustPlane-* header other
		// than the proof's would reach the upstream beside the context
		// headers, unverified.
		h.denyEarly(w, r, rec, reason.RequestBindingMismatch, reason.DetailForeignHeader,
			errors.New("an X-TrustPlane-* header other than the proof headers came from the caller"), true)
		return
	}
	if foreignForwardingHeader(hdr) {
		h.denyEarly(w, r, rec, reason.RequestBindingMismatch, reason.DetailForeignHeader,
			errors.New("an X-Forwarded-* header no gateway owns came from the caller"), true)
		return
	}
	b, err := h.readBody(w, r)
	defer b.done()
	if errors.Is(err, errBodyMemory) {
		h.denyEarly(w, r, rec, reason.VerifierOverloaded, reason.DetailBodyMemory, err, true)
		return
	}
	if err != nil {
		w.Header().Set("X-Request-Id", reqID)
		http.Error(w, "request body could not be read", http.StatusBadRequest)
		return
	}
	read := time.Now() // the request is read: the decision's own time starts
	scheme := h.cfg.ExternalScheme
	if scheme == "" {
		scheme = strings.ToLower(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto")))
	}
	if scheme == "" {
		scheme = "http"
	}
	authority := r.Header.Get("X-Forwarded-Host")
	if authority == "" {
		authority = r.Host
	}
	// A gateway that forwards no body (nginx auth_request) sends none.
	// Whether the original request had one, it says in
	// X-Original-Content-Length / -Transfer-Encoding (SPEC §10.2).
	// An empty body from the gateway is no evidence either way (a chunked
	// framing of nothing).
	unseen := false
	if len(b.bytes) == 0 && !b.tooLarge {
		unseen = originalHadBody(r.Header, method)
	} else if n, ok := originalLength(r.Header); ok && !b.tooLarge && n != int64(len(b.bytes)) {
		h.denyEarly(w, r, rec, reason.RequestBindingMismatch, reason.DetailBodyLength,
			errors.New("the body the gateway sent is not as long as X-Original-Content-Length says"), true)
		return
	}
	cr := &core.Request{
		Method:          method,
		Scheme:          scheme,
		Authority:       authority,
		RawPath:         path,
		RawQuery:        query,
		Header:          hdr,
		Body:            b.bytes,
		BodyTooLarge:    b.tooLarge,
		BodyFromGateway: unseen,
		MustBeCovered:   mustBeCovered,
	}
	d, up := h.decide(r.Context(), cr, reqID, upstreamTarget(r.Header.Get("X-Original-Uri")), true, nil)
	token := up.assertion
	if !d.Allowed() {
		writeCheckDeny(w, &d, reqID)
		h.tel.duration(r.Context(), &d, read)
		return
	}
	setContextHeaders(w.Header(), &d)
	if token != "" {
		// The gateway forwards it upstream (docs/BACKEND-JWT.md).
		w.Header().Set("X-TrustPlane-Assertion", token)
	}
	w.Header().Set("X-Request-Id", reqID)
	w.WriteHeader(http.StatusOK)
	h.tel.duration(r.Context(), &d, read)
}

// writeCheckDeny answers a gateway: 401 for the 401-class codes and 403 for
// every other, since nginx auth_request passes only 2xx, 401 and 403; the
// real code and status travel in headers and the §6 body.
func writeCheckDeny(w http.ResponseWriter, d *core.Decision, reqID string) {
	status := http.StatusForbidden
	if d.Status == http.StatusUnauthorized {
		status = http.StatusUnauthorized
	}
	w.Header().Set("X-TrustPlane-Reason", string(d.Reason))
	w.Header().Set("X-TrustPlane-Status", strconv.Itoa(d.Status))
	writeDeny(w, status, d, reqID)
}

// gatewayHeader reports whether a header is one the gateway sets for check
// mode itself, which is never a covered header of the caller's.
func gatewayHeader(k string) bool {
	switch k {
	case "X-Original-Method", "X-Original-Uri", "X-Original-Content-Length", "X-Original-Transfer-Encoding":
		return true
	}
	return false
}

// foreignTrustPlaneHeader reports whether h holds an X-TrustPlane-* header
// (any spelling) other than the four proof headers of SPEC §3.5.
func foreignTrustPlaneHeader(h http.Header) bool {
	for k := range h {
		if isTrustPlaneName(k) && !slices.Contains(wireHeaders, k) {
			return true
		}
	}
	return false
}

// originalLength returns the single X-Original-Content-Length value, when
// there is exactly one and it is a plain decimal.
func originalLength(h http.Header) (int64, bool) {
	v := h.Values("X-Original-Content-Length")
	if len(v) != 1 || v[0] == "" || len(v[0]) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v[0]); i++ {
		c := v[0][i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// originalHadBody reports whether the original request had a body, from
// the gateway's X-Original-Content-Length and X-Original-Transfer-Encoding
// (SPEC §10.2 [ours]): a non-empty transfer coding or a length above zero
// means a body; without a length, every method but GET, HEAD and OPTIONS
// is taken as having had one. A length that cannot be read is doubt, and
// doubt means a body.
func originalHadBody(h http.Header, method string) bool {
	for _, v := range h.Values("X-Original-Transfer-Encoding") {
		if strings.TrimSpace(v) != "" {
			return true
		}
	}
	if _, hasLen := h["X-Original-Content-Length"]; hasLen {
		n, ok := originalLength(h)
		return !ok || n > 0
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}
