package proxy

import (
	"encoding/json"
	"maps"
	"net/http"
	"strconv"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/reason"
)

// writeDeny writes the SPEC §6 deny body, exactly its three members, and
// X-Request-Id. No detail, no key material, no echo of caller input.
func writeDeny(w http.ResponseWriter, status int, d *core.Decision, reqID string) {
	hdr, body := DenyResponse(d, reqID)
	maps.Copy(w.Header(), hdr)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// DenyResponse is the answer to a denied request: the SPEC §6 JSON body,
// exactly its three members, and its headers (Content-Type, Cache-Control,
// Content-Length, X-Request-Id, and WWW-Authenticate for the 401 class).
// Every mode answers denials with it; the gRPC gateway sends it in its
// DeniedHttpResponse.
func DenyResponse(d *core.Decision, reqID string) (http.Header, []byte) {
	// Both values are safe JSON strings: codes are [a-z_], request ids
	// [A-Za-z0-9._-] or a UUID.
	body := `{"allowed":false,"reason":` + strconv.Quote(string(d.Reason)) +
		`,"request_id":` + strconv.Quote(reqID) + "}"
	h := make(http.Header, 5)
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Request-Id", reqID)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if d.Reason == reason.PassportMissing || d.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="tpcluster"`)
	}
	return h, []byte(body)
}

// auditFailed turns a decision that could not be recorded into a closed
// failure: nothing is allowed without a record (SPEC §9).
func auditFailed(d core.Decision, err error) core.Decision {
	d.Outcome = core.Deny
	d.Reason = reason.AuditUnavailable
	d.Status = reason.AuditUnavailable.HTTPStatus()
	d.Err = err
	return d
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func (h *Handler) serveReady(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Ready == nil {
		writeJSON(w, http.StatusOK, map[string]any{"ready": true})
		return
	}
	ready, body := h.cfg.Ready(r.Context(), r.URL.Query().Get("strict") == "1")
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, body)
}
