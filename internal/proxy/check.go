package proxy

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

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
		d := core.Decision{Reason: reason.GatewayNotTrusted, Status: reason.GatewayNotTrusted.HTTPStatus(),
			Err: errors.New("check request from a peer outside --trusted-proxies")}
		if h.cfg.Record != nil {
			if err := h.cfg.Record(r.Context(), &Record{Decision: &d, RequestID: reqID, Method: r.Method}); err != nil {
				h.log.Error("audit record failed", "request_id", reqID, "err", err)
			}
		}
		h.tel.count(r.Context(), &d)
		writeCheckDeny(w, &d, reqID)
		return
	}
	body, tooLarge, err := h.readBody(w, r)
	if err != nil {
		w.Header().Set("X-Request-Id", reqID)
		http.Error(w, "request body could not be read", http.StatusBadRequest)
		return
	}
	method := strings.TrimSpace(r.Header.Get("X-Original-Method"))
	if method == "" {
		method = r.Method
	}
	path, query := splitTarget(r.Header.Get("X-Original-Uri"))
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
	// The gateway's own headers are never covered (SPEC §10.2); the
	// X-Forwarded-* names are never covered anyway (SPEC §3.4).
	hdr := make(http.Header, len(r.Header))
	for k, v := range r.Header {
		if !strings.HasPrefix(k, "X-Original-") {
			hdr[k] = v
		}
	}
	// A gateway that forwards no body (nginx auth_request) sends neither a
	// length nor a chunked body; routes that allow it then take the body
	// hash from the caller's header (SPEC §4).
	noBody := r.ContentLength <= 0 && len(r.TransferEncoding) == 0
	cr := &core.Request{
		Method:          method,
		Scheme:          scheme,
		Authority:       authority,
		RawPath:         path,
		RawQuery:        query,
		Header:          hdr,
		Body:            body,
		BodyTooLarge:    tooLarge,
		BodyFromGateway: noBody,
	}
	d := h.decide(r.Context(), cr, reqID)
	if !d.Allowed() {
		writeCheckDeny(w, &d, reqID)
		return
	}
	setContextHeaders(w.Header(), &d)
	w.Header().Set("X-Request-Id", reqID)
	w.WriteHeader(http.StatusOK)
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
