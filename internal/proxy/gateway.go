package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/reason"
)

// GatewayRequest is a request a gateway asks about in a message of its own
// rather than over HTTP (Envoy ext_authz gRPC, internal/extauthz): the
// adapter has rebuilt the caller's request from that message. It is check
// mode without the X-Original-* headers: the same trust rule, the same
// pre-checks, pipeline, audit record and telemetry.
type GatewayRequest struct {
	// Peer is the gateway's address; outside TrustedProxies the request is
	// denied gateway_not_trusted before anything else.
	Peer netip.Addr
	// RequestID is the gateway's id for the request (Envoy's
	// x-request-id), used when it is a valid request id (SPEC §9); if not,
	// the handler makes one.
	RequestID string
	// Malformed, when set, is why the gateway's message describes no
	// request that can be decided (no HTTP attributes, no method): the
	// request is denied request_binding_mismatch with MalformedDetail,
	// after the trust check, recorded like any decision.
	Malformed       error
	MalformedDetail reason.Detail

	Method    string
	Scheme    string
	Authority string
	// Target is the request target exactly as the caller sent it: the raw
	// path and query, no decoding (SPEC §3.2).
	Target string
	// Header is the caller's headers in net/http's canonical form, the
	// gateway's own (pseudo-headers, its request id) removed.
	Header http.Header
	// Body is the body as the gateway passed it.
	Body []byte
	// OriginalLength is the original request's Content-Length, or -1 when
	// unknown. A length above MaxBodyBytes makes the request
	// request_body_too_large (413) whatever body was passed.
	OriginalLength int64
	// BodyPartial reports that Body is only the start of the original body
	// (the gateway buffered up to a limit of its own). A partial body of
	// MaxBodyBytes or more is request_body_too_large; a shorter one is a
	// body the verifier did not see (core.Request.BodyFromGateway).
	BodyPartial bool
	// BodyUnseen reports that the original request had a body the gateway
	// did not pass at all (core.Request.BodyFromGateway).
	BodyUnseen bool
	// HeadersMerged reports that the gateway joined each repeated header's
	// values with "," into one (Envoy without encode_raw_headers): a
	// singleton header (Content-Type, ...) whose value holds a comma may
	// then have been two field lines, and is refused as a repeated one.
	HeadersMerged bool
	// Refine, if set, sees a denial other than gateway_not_trusted before
	// it is recorded and may replace its detail and error, to name the
	// gateway setting behind it.
	Refine func(d *core.Decision)
}

// GatewayAnswer is the handler's answer to a GatewayRequest.
type GatewayAnswer struct {
	// Decision is the decision, as recorded.
	Decision  core.Decision
	RequestID string
	// Set holds, on an allow, the headers the gateway must set on the
	// request it forwards (one value each, replacing any the caller sent):
	// the context headers of SPEC §10.2, X-Request-Id, and
	// X-TrustPlane-Assertion when the route asked for one.
	Set http.Header
	// Remove lists, on an allow, the caller's header names (lower case)
	// that must not reach the upstream: every X-TrustPlane-* name and
	// Authorization (the proof headers stay with ForwardProofHeaders), the
	// forwarding headers the gateway does not own, and the override headers
	// the transcript did not cover (unless the route keeps them). No name
	// of Set is listed: a gateway that removes after it sets (Envoy) would
	// remove ours.
	Remove []string
}

// CheckGateway decides a request a gateway asks about: trust, the
// adapter's pre-checks, body memory, the pipeline, the backend assertion,
// the audit record and the metrics, as check mode does. ownForwarding
// reports the folded forwarding header names the gateway sets itself,
// which are left to it.
func (h *Handler) CheckGateway(ctx context.Context, gr *GatewayRequest, ownForwarding func(folded string) bool) GatewayAnswer {
	reqID := gr.RequestID
	if !validRequestID(reqID) {
		reqID = newRequestID()
	}
	path, query := splitTarget(gr.Target)
	rec := &Record{RequestID: reqID, Method: gr.Method, Path: path}
	if !gr.Peer.IsValid() || !trustedAddr(h.cfg.TrustedProxies, gr.Peer) {
		// Before step 1: an untrusted peer could describe any request.
		d := h.recordEarly(ctx, rec, reason.GatewayNotTrusted, reason.DetailUntrustedPeer,
			errors.New("gRPC check from a peer outside --trusted-proxies"))
		return GatewayAnswer{Decision: d, RequestID: reqID}
	}
	refuse := func(code reason.Code, detail reason.Detail, err error) GatewayAnswer {
		d := core.Decision{Reason: code, Status: code.HTTPStatus(), Detail: detail, Err: err}
		if gr.Refine != nil {
			gr.Refine(&d)
		}
		return GatewayAnswer{Decision: h.recordRefusal(ctx, rec, d), RequestID: reqID}
	}
	if gr.Malformed != nil {
		return refuse(reason.RequestBindingMismatch, gr.MalformedDetail, gr.Malformed)
	}
	if detail, err := preCheck(gr.Method, gr.Header); err != nil {
		return refuse(reason.RequestBindingMismatch, detail, err)
	}
	if gr.HeadersMerged {
		if name := joinedSingleton(gr.Header); name != "" {
			return refuse(reason.RequestBindingMismatch, reason.DetailHeaderRepeated,
				fmt.Errorf("header %s holds a comma in a merged header map: it may have been more than one field line", name))
		}
	}
	// The message is already in memory (the gRPC server bounds its size);
	// the reservation keeps the bytes all deciding requests hold under
	// --max-body-memory-bytes, as in the other modes.
	held := int64(len(gr.Body))
	if !h.mem.reserve(held) {
		return refuse(reason.VerifierOverloaded, reason.DetailBodyMemory, errBodyMemory)
	}
	defer h.mem.release(held)
	read := time.Now()

	limit := h.cfg.MaxBodyBytes
	tooLarge := gr.OriginalLength > limit || int64(len(gr.Body)) > limit ||
		(gr.BodyPartial && int64(len(gr.Body)) >= limit)
	if !tooLarge && !gr.BodyPartial && gr.OriginalLength >= 0 && gr.OriginalLength != int64(len(gr.Body)) && len(gr.Body) > 0 {
		return refuse(reason.RequestBindingMismatch, reason.DetailBodyLength,
			fmt.Errorf("the gateway passed %d body bytes of a request whose Content-Length is %d", len(gr.Body), gr.OriginalLength))
	}
	scheme := gr.Scheme
	if h.cfg.ExternalScheme != "" {
		// A gateway behind a TLS terminator sees plain HTTP (SPEC §4).
		scheme = h.cfg.ExternalScheme
	}
	cr := &core.Request{
		Method:          gr.Method,
		Scheme:          scheme,
		Authority:       gr.Authority,
		RawPath:         path,
		RawQuery:        query,
		Header:          gr.Header,
		BodyTooLarge:    tooLarge,
		BodyFromGateway: !tooLarge && (gr.BodyPartial || gr.BodyUnseen),
	}
	if !cr.BodyTooLarge && !cr.BodyFromGateway {
		cr.Body = gr.Body
	}
	// Like check mode, the gateway forwards the request itself: an egress
	// route (docs/OAUTH-EGRESS.md) is refused, never half served.
	d, up := h.decide(ctx, cr, reqID, upstreamTarget(gr.Target), true, gr.Refine)
	defer h.tel.duration(ctx, &d, read)
	ans := GatewayAnswer{Decision: d, RequestID: reqID}
	if !d.Allowed() {
		return ans
	}
	ans.Set = make(http.Header, 8)
	setContextHeaders(ans.Set, &d)
	if up.assertion != "" {
		ans.Set.Set("X-TrustPlane-Assertion", up.assertion)
	}
	ans.Set.Set("X-Request-Id", reqID)
	ans.Remove = h.removals(gr.Header, &d, ans.Set, ownForwarding)
	return ans
}

// removals is GatewayAnswer.Remove: what proxy mode's rewrite drops from
// the forwarded request, as names for a gateway to remove.
func (h *Handler) removals(hdr http.Header, d *core.Decision, set http.Header, ownForwarding func(string) bool) []string {
	var out []string
	for k := range hdr {
		if _, ours := set[k]; ours {
			continue // replaced by ours
		}
		f := foldName(k)
		drop := false
		switch {
		case slices.Contains(wireHeaders, k):
			drop = !h.cfg.ForwardProofHeaders
		case isTrustPlaneName(k):
			drop = true
		case forwardingHeader(f):
			drop = ownForwarding == nil || !ownForwarding(f) || k != http.CanonicalHeaderKey(f)
		case overrideHeader(f):
			// Covered names are compared as sent (dropUncovered).
			drop = !d.KeepOverrideHeaders && !slices.Contains(d.CoveredHeaders, lower(k))
		}
		if drop {
			out = append(out, lower(k))
		}
	}
	slices.Sort(out) // map order must not change the answer
	return out
}

// joinedSingleton returns the first singleton header (folded, in sorted
// order) whose value holds a comma, or "".
func joinedSingleton(h http.Header) string {
	var found []string
	for k, vs := range h {
		if f := foldName(k); singleton(f) && slices.ContainsFunc(vs, func(v string) bool { return strings.Contains(v, ",") }) {
			found = append(found, f)
		}
	}
	if len(found) == 0 {
		return ""
	}
	slices.Sort(found)
	return found[0]
}

// lower returns an ASCII header name in lower case.
func lower(k string) string {
	b := []byte(k)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
