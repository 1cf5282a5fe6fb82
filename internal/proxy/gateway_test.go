package proxy

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"testing"

	"github.com/tpcluster/tpcluster/internal/reason"
)

// gatewayReq is the GatewayRequest a gRPC gateway on loopback makes of
// req (whose body is body).
func gatewayReq(req *http.Request, body []byte) *GatewayRequest {
	return &GatewayRequest{
		Peer: netip.MustParseAddr("127.0.0.1"), Method: req.Method, Scheme: req.URL.Scheme, Authority: req.URL.Host,
		Target: req.URL.RequestURI(), Header: req.Header.Clone(), Body: body, OriginalLength: int64(len(body)),
	}
}

func envoyOwns(f string) bool { return f == "x-forwarded-for" || f == "x-forwarded-proto" }

// TestCheckGatewayRemovals: the names an allow tells the gateway to remove
// are proxy mode's: override headers the transcript did not cover (kept
// when covered or when the route keeps them), the proof headers unless
// --forward-proof-headers, the forwarding headers the gateway does not own.
func TestCheckGatewayRemovals(t *testing.T) {
	const base = "http://api.gw.example"
	tests := []struct {
		name        string
		forward     bool
		req         func(r *rig) *http.Request
		wantRemoved []string
		wantKept    []string
	}{
		{"uncovered override header", false, func(r *rig) *http.Request {
			req := r.sign(t, "GET", base, "/v1/orders/1", "orders.get", nil)
			req.Header.Set("X-HTTP-Method-Override", "DELETE")
			return req
		}, []string{"x-http-method-override", "authorization", "x-trustplane-proof"}, nil},
		{"covered override header", false, func(r *rig) *http.Request {
			return r.sign(t, "GET", base, "/v1/orders/2", "orders.get", nil, "X-HTTP-Method-Override", "GET")
		}, []string{"authorization"}, []string{"x-http-method-override"}},
		{"route keeps override headers", false, func(r *rig) *http.Request {
			req := r.sign(t, "POST", base, "/v1/keep", "orders.keep", nil)
			req.Header.Set("X-HTTP-Method-Override", "PUT")
			return req
		}, []string{"authorization"}, []string{"x-http-method-override"}},
		{"--forward-proof-headers", true, func(r *rig) *http.Request {
			req := r.sign(t, "GET", base, "/v1/orders/3", "orders.get", nil)
			req.Header.Set("X-Trustplane-Other", "1")
			return req
		}, []string{"x-trustplane-other"}, []string{"authorization", "x-trustplane-proof", "x-trustplane-nonce"}},
		{"forwarding headers", false, func(r *rig) *http.Request {
			req := r.sign(t, "GET", base, "/v1/orders/4", "orders.get", nil)
			req.Header.Set("X-Forwarded-For", "203.0.113.9")
			req.Header.Set("X-Forwarded-Proto", "http")
			req.Header.Set("X-Forwarded-Host", "evil.example")
			req.Header.Set("X-Real-Ip", "203.0.113.9")
			req.Header["X_forwarded_proto"] = []string{"https"}
			return req
		}, []string{"x-forwarded-host", "x-real-ip", "x_forwarded_proto"}, []string{"x-forwarded-for", "x-forwarded-proto"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, func(c *Config) { c.ForwardProofHeaders = tt.forward })
			ans := r.h.CheckGateway(t.Context(), gatewayReq(tt.req(r), nil), envoyOwns)
			if !ans.Decision.Allowed() {
				t.Fatalf("CheckGateway = %s/%s, want allowed", ans.Decision.Reason, ans.Decision.Detail)
			}
			for _, n := range tt.wantRemoved {
				if !slices.Contains(ans.Remove, n) {
					t.Errorf("Remove = %v, lacks %s", ans.Remove, n)
				}
			}
			for _, n := range tt.wantKept {
				if slices.Contains(ans.Remove, n) {
					t.Errorf("Remove = %v, lists %s", ans.Remove, n)
				}
			}
			if ans.Set.Get("X-Trustplane-Subject") != pSubject || ans.Set.Get("X-Request-Id") != ans.RequestID {
				t.Errorf("Set = %v", ans.Set)
			}
		})
	}
}

// TestCheckGatewayRefusals: what the gateway path refuses before the
// pipeline, each recorded once with its detail.
func TestCheckGatewayRefusals(t *testing.T) {
	const base = "http://api.gw.example"
	body := []byte(`{"a":1}`)
	tests := []struct {
		name       string
		gr         func(r *rig) *GatewayRequest
		fill       bool // body memory full
		wantReason reason.Code
		wantDetail reason.Detail
	}{
		{"no peer", func(r *rig) *GatewayRequest {
			gr := gatewayReq(r.sign(t, "GET", base, "/v1/orders/1", "orders.get", nil), nil)
			gr.Peer = netip.Addr{}
			return gr
		}, false, reason.GatewayNotTrusted, reason.DetailUntrustedPeer},
		{"merged Content-Type with a comma", func(r *rig) *GatewayRequest {
			gr := gatewayReq(r.sign(t, "GET", base, "/v1/orders/1", "orders.get", nil), nil)
			gr.Header.Set("Content-Type", "text/plain,application/json")
			gr.HeadersMerged = true
			return gr
		}, false, reason.RequestBindingMismatch, reason.DetailHeaderRepeated},
		{"body shorter than Content-Length", func(r *rig) *GatewayRequest {
			gr := gatewayReq(r.sign(t, "POST", base, "/v1/orders", "orders.create", body), body)
			gr.OriginalLength = int64(len(body)) + 5
			return gr
		}, false, reason.RequestBindingMismatch, reason.DetailBodyLength},
		{"body memory full", func(r *rig) *GatewayRequest {
			return gatewayReq(r.sign(t, "POST", base, "/v1/orders", "orders.create", body), body)
		}, true, reason.VerifierOverloaded, reason.DetailBodyMemory},
		{"Content-Length above --max-body-bytes", func(r *rig) *GatewayRequest {
			gr := gatewayReq(r.sign(t, "POST", base, "/v1/orders", "orders.create", body), body)
			gr.OriginalLength = 4096 // the rig's limit is 1024
			return gr
		}, false, reason.RequestBodyTooLarge, reason.DetailBodySize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil)
			if tt.fill {
				if !r.h.mem.reserve(r.h.mem.limit) {
					t.Fatal("could not fill body memory")
				}
				defer r.h.mem.release(r.h.mem.limit)
			}
			ans := r.h.CheckGateway(t.Context(), tt.gr(r), envoyOwns)
			if ans.Decision.Reason != tt.wantReason || ans.Decision.Detail != tt.wantDetail || ans.Decision.Status != tt.wantReason.HTTPStatus() {
				t.Errorf("CheckGateway = %s/%s %d, want %s/%s", ans.Decision.Reason, ans.Decision.Detail, ans.Decision.Status, tt.wantReason, tt.wantDetail)
			}
			r.mu.Lock()
			n := len(r.recs)
			r.mu.Unlock()
			if n != 1 {
				t.Errorf("%d records, want 1", n)
			}
			if ans.Set != nil || ans.Remove != nil {
				t.Errorf("a denial with headers to set or remove: %v %v", ans.Set, ans.Remove)
			}
		})
	}
}

// TestCheckGatewayExternalScheme: --external-scheme is the scheme of every
// request on the gateway path too (a gateway behind a TLS terminator).
func TestCheckGatewayExternalScheme(t *testing.T) {
	r := newRig(t, func(c *Config) { c.ExternalScheme = "https" })
	gr := gatewayReq(r.sign(t, "GET", "https://api.gw.example", "/v1/orders/1", "orders.get", nil), nil)
	gr.Scheme = "http"
	if ans := r.h.CheckGateway(t.Context(), gr, envoyOwns); !ans.Decision.Allowed() {
		t.Errorf("signed for https, gateway saw http, --external-scheme https: %s/%s, want allowed", ans.Decision.Reason, ans.Decision.Detail)
	}
	r2 := newRig(t, nil)
	gr = gatewayReq(r2.sign(t, "GET", "https://api.gw.example", "/v1/orders/2", "orders.get", nil), nil)
	gr.Scheme = "http"
	if ans := r2.h.CheckGateway(t.Context(), gr, envoyOwns); ans.Decision.Detail != reason.DetailTranscript {
		t.Errorf("signed for https, gateway saw http: %s/%s, want request_binding_mismatch/transcript", ans.Decision.Reason, ans.Decision.Detail)
	}
}

// TestCheckGatewayAuditFailure: a refusal that cannot be recorded fails
// closed as audit_unavailable, except gateway_not_trusted, which an
// untrusted peer gets whatever the audit state (as in check mode).
func TestCheckGatewayAuditFailure(t *testing.T) {
	r := newRig(t, func(c *Config) {
		c.Record = func(context.Context, *Record) error { return errors.New("spool full") }
	})
	gr := gatewayReq(r.sign(t, "GET", "http://api.gw.example", "/v1/orders/1", "orders.get", nil), nil)
	gr.Peer = netip.MustParseAddr("203.0.113.7")
	if ans := r.h.CheckGateway(t.Context(), gr, envoyOwns); ans.Decision.Reason != reason.GatewayNotTrusted {
		t.Errorf("untrusted peer, audit failing: %s, want gateway_not_trusted", ans.Decision.Reason)
	}
	gr = gatewayReq(r.sign(t, "GET", "http://api.gw.example", "/v1/orders/2", "orders.get", nil), nil)
	gr.Method = "get"
	if ans := r.h.CheckGateway(t.Context(), gr, envoyOwns); ans.Decision.Reason != reason.AuditUnavailable || ans.Decision.Status != 503 {
		t.Errorf("refusal, audit failing: %s %d, want audit_unavailable 503", ans.Decision.Reason, ans.Decision.Status)
	}
	gr = gatewayReq(r.sign(t, "GET", "http://api.gw.example", "/v1/orders/3", "orders.get", nil), nil)
	if ans := r.h.CheckGateway(t.Context(), gr, envoyOwns); ans.Decision.Reason != reason.AuditUnavailable || ans.Set != nil {
		t.Errorf("allow, audit failing: %s, headers %v; want audit_unavailable and nothing to set", ans.Decision.Reason, ans.Set)
	}
}

// TestCheckGatewayEgress: the gateway path serves no egress route, as
// check mode does not (the gateway forwards the request itself): it is
// refused egress_token_unavailable (502), no token asked for, nothing to set.
func TestCheckGatewayEgress(t *testing.T) {
	r := newEgressRig(t, nil)
	q := r.signAsSubject(t, crmPrefix+"alice", "GET", "/crm/contacts/1", "crm.cc")
	ans := r.h.CheckGateway(t.Context(), gatewayReq(q, nil), envoyOwns)
	if ans.Decision.Reason != reason.EgressTokenUnavailable || ans.Decision.Status != 502 || ans.Decision.Detail != reason.DetailEgressCheckMode {
		t.Errorf("egress route on the gateway path = %s/%s %d, want egress_token_unavailable/egress_check_mode 502", ans.Decision.Reason, ans.Decision.Detail, ans.Decision.Status)
	}
	if r.op.Count() != 0 || ans.Set != nil {
		t.Errorf("a token was asked for (%d) or headers set (%v)", r.op.Count(), ans.Set)
	}
}
