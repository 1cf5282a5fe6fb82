package extauthz

import (
	"bytes"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tpcluster/tpcluster/internal/reason"
)

// okHeaders returns the headers an allow sets and the names it removes,
// or fails.
func okHeaders(t testing.TB, resp *authv3.CheckResponse) (map[string]string, []string) {
	t.Helper()
	ok := resp.GetOkResponse()
	if resp.GetStatus().GetCode() != int32(codes.OK) || ok == nil {
		d := resp.GetDeniedResponse()
		t.Fatalf("want an allow, got status %v, denial %d %s", resp.GetStatus(), d.GetStatus().GetCode(), d.GetBody())
	}
	set := map[string]string{}
	for _, h := range ok.GetHeaders() {
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("header %s has append_action %v: a caller's value of that name would stay beside ours", h.GetHeader().GetKey(), h.GetAppendAction())
		}
		if _, dup := set[h.GetHeader().GetKey()]; dup {
			t.Errorf("header %s set twice", h.GetHeader().GetKey())
		}
		set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return set, ok.GetHeadersToRemove()
}

// TestCheckAllowAndReplay: a signed POST shaped as the shipped Envoy
// config sends it is allowed; Envoy is told to set the context headers and
// X-Request-Id (replacing the caller's X-TrustPlane-Subject) and to remove
// the proof headers, Authorization, the caller's other X-TrustPlane-*
// names (underscore spelling too) and the forwarding headers it does not
// own; the same CheckRequest again is a 409 jti_replay with the §6 body.
// Each decision is recorded once, with Envoy's x-request-id.
func TestCheckAllowAndReplay(t *testing.T) {
	r := newRig(t, rigOpts{})
	s := shippedSettings(t)
	body := []byte(`{"order":1,"note":"caf\xc3\xa9"}`)
	req := r.sign(t, "POST", "/v1/orders?b=1&a=2", "orders.create", body, "Content-Type", "application/json")
	req.Header.Set("X-TrustPlane-Subject", "spoofed")
	req.Header.Set("X-Trustplane-Admin", "1")
	req.Header["X_trustplane_subject"] = []string{"spoofed too"}
	req.Header.Set("X-Forwarded-Host", "evil.example")
	req.Header.Set("Forwarded", "host=evil.example")
	cr := envoyRequest(req, body, s)
	envoyID := ""
	for _, h := range cr.GetAttributes().GetRequest().GetHttp().GetHeaderMap().GetHeaders() {
		if h.GetKey() == "x-request-id" {
			envoyID = string(h.GetRawValue())
		}
	}

	set, remove := okHeaders(t, r.check(t, cr))
	want := map[string]string{
		"x-trustplane-subject": tSubject, "x-trustplane-issuer": tIssuer, "x-trustplane-trust-domain": tDomain,
		"x-trustplane-route-id": "orders.create", "x-trustplane-key-binding": "software", "x-request-id": envoyID,
	}
	for k, v := range want {
		if set[k] != v {
			t.Errorf("set %s = %q, want %q", k, set[k], v)
		}
	}
	if set["x-trustplane-jti"] == "" {
		t.Error("no x-trustplane-jti set")
	}
	for _, name := range []string{"authorization", "x-trustplane-nonce", "x-trustplane-proof", "x-trustplane-body-sha256",
		"x-trustplane-transcript-sha256", "x-trustplane-admin", "x_trustplane_subject", "x-forwarded-host", "forwarded"} {
		if !slices.Contains(remove, name) {
			t.Errorf("headers_to_remove %v lacks %s", remove, name)
		}
	}
	for _, name := range []string{"x-trustplane-subject", "x-forwarded-for", "x-forwarded-proto", "content-type"} {
		if slices.Contains(remove, name) {
			t.Errorf("headers_to_remove lists %s (Envoy removes after it sets, or the name is not the caller's to lose)", name)
		}
	}

	status, hdr, jbody := denied(t, r.check(t, cr))
	if status != 409 || jbody["reason"] != "jti_replay" || hdr["x-trustplane-reason"] != "jti_replay" {
		t.Errorf("replay = %d %v %v, want 409 jti_replay", status, hdr, jbody)
	}
	if len(jbody) != 3 || jbody["allowed"] != false || jbody["request_id"] != hdr["x-request-id"] {
		t.Errorf("deny body %v: want exactly allowed, reason, request_id (= X-Request-Id %q)", jbody, hdr["x-request-id"])
	}
	recs := r.records()
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2", len(recs))
	}
	for i, wantReason := range []reason.Code{reason.Allowed, reason.JTIReplay} {
		rec := recs[i]
		if rec.Decision.Reason != wantReason || rec.RequestID != envoyID || rec.Method != "POST" || rec.Path != "/v1/orders" {
			t.Errorf("record %d = %s %s %s %s, want %s %s POST /v1/orders", i, rec.Decision.Reason, rec.RequestID, rec.Method, rec.Path, wantReason, envoyID)
		}
	}
}

// TestCheckDenials: one denial per status class, each with the §6 status,
// the JSON body, X-TrustPlane-Reason, X-Request-Id and the gRPC code that
// fits, and the detail the audit record carries.
func TestCheckDenials(t *testing.T) {
	r := newRig(t, rigOpts{})
	s := shippedSettings(t)
	big := bytes.Repeat([]byte("x"), int(s.maxRequestBytes)+100)
	tests := []struct {
		name       string
		cr         func() *authv3.CheckRequest
		wantStatus int
		wantCode   codes.Code
		wantReason reason.Code
		wantDetail reason.Detail
	}{
		{"no passport", func() *authv3.CheckRequest {
			req := r.sign(t, "GET", "/v1/orders/1", "orders.get", nil)
			req.Header.Del("Authorization")
			return envoyRequest(req, nil, s)
		}, 401, codes.Unauthenticated, reason.PassportMissing, reason.DetailBearerMissing},
		{"altered body", func() *authv3.CheckRequest {
			return envoyRequest(r.sign(t, "POST", "/v1/orders", "orders.create", []byte(`{"a":1}`)), []byte(`{"a":2}`), s)
		}, 401, codes.Unauthenticated, reason.RequestBindingMismatch, reason.DetailBodyHash},
		{"no route", func() *authv3.CheckRequest {
			return envoyRequest(r.sign(t, "GET", "/v2/nothing", "orders.get", nil), nil, s)
		}, 404, codes.PermissionDenied, reason.BundleRouteMissing, reason.DetailNoRoute},
		{"non-canonical path", func() *authv3.CheckRequest {
			cr := envoyRequest(r.sign(t, "GET", "/v1/orders/1", "orders.get", nil), nil, s)
			cr.Attributes.Request.Http.Path = "/v1/orders/../orders/1"
			return cr
		}, 400, codes.PermissionDenied, reason.RequestPathNoncanonical, reason.DetailPath},
		{"body above --max-body-bytes, cut by Envoy", func() *authv3.CheckRequest {
			return envoyRequest(r.sign(t, "POST", "/v1/orders", "orders.create", big), big, s)
		}, 413, codes.PermissionDenied, reason.RequestBodyTooLarge, reason.DetailBodySize},
		{"lower-case method", func() *authv3.CheckRequest {
			cr := envoyRequest(r.sign(t, "GET", "/v1/orders/2", "orders.get", nil), nil, s)
			cr.Attributes.Request.Http.Method = "get"
			return cr
		}, 401, codes.Unauthenticated, reason.RequestBindingMismatch, reason.DetailMethodSpelling},
		{"two Content-Type field lines", func() *authv3.CheckRequest {
			req := r.sign(t, "GET", "/v1/orders/3", "orders.get", nil)
			req.Header["Content-Type"] = []string{"text/plain", "application/json"}
			return envoyRequest(req, nil, s)
		}, 401, codes.Unauthenticated, reason.RequestBindingMismatch, reason.DetailHeaderRepeated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(r.records())
			resp := r.check(t, tt.cr())
			status, hdr, body := denied(t, resp)
			if status != tt.wantStatus || body["reason"] != string(tt.wantReason) || hdr["x-trustplane-reason"] != string(tt.wantReason) {
				t.Errorf("Check = %d %v, want %d %s", status, body, tt.wantStatus, tt.wantReason)
			}
			if codes.Code(resp.GetStatus().GetCode()) != tt.wantCode {
				t.Errorf("gRPC code = %v, want %v", codes.Code(resp.GetStatus().GetCode()), tt.wantCode)
			}
			if hdr["x-request-id"] == "" || hdr["x-request-id"] != body["request_id"] || hdr["content-type"] != "application/json" {
				t.Errorf("deny headers %v, body %v: want X-Request-Id = request_id and JSON", hdr, body)
			}
			if (tt.wantStatus == 401) != (hdr["www-authenticate"] != "") {
				t.Errorf("WWW-Authenticate = %q for a %d", hdr["www-authenticate"], tt.wantStatus)
			}
			recs := r.records()
			if len(recs) != before+1 {
				t.Fatalf("%d records after the check, want %d", len(recs), before+1)
			}
			if got := recs[len(recs)-1].Decision; got.Reason != tt.wantReason || got.Detail != tt.wantDetail {
				t.Errorf("recorded %s/%s, want %s/%s", got.Reason, got.Detail, tt.wantReason, tt.wantDetail)
			}
		})
	}
}

// TestCheckUntrustedPeer: a gRPC peer outside --trusted-proxies is denied
// gateway_not_trusted (403) before anything else, and recorded.
func TestCheckUntrustedPeer(t *testing.T) {
	r := newRig(t, rigOpts{trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	resp := r.check(t, envoyRequest(r.sign(t, "GET", "/v1/orders/1", "orders.get", nil), nil, shippedSettings(t)))
	status, _, body := denied(t, resp)
	if status != 403 || body["reason"] != "gateway_not_trusted" || codes.Code(resp.GetStatus().GetCode()) != codes.PermissionDenied {
		t.Errorf("untrusted peer = %d %v %v, want 403 gateway_not_trusted", status, body, resp.GetStatus())
	}
	if recs := r.records(); len(recs) != 1 || recs[0].Decision.Detail != reason.DetailUntrustedPeer {
		t.Errorf("records %v, want one untrusted_peer", recs)
	}
	// An untrusted peer's malformed message is still gateway_not_trusted.
	if status, _, body := denied(t, r.check(t, &authv3.CheckRequest{})); status != 403 || body["reason"] != "gateway_not_trusted" {
		t.Errorf("untrusted empty CheckRequest = %d %v, want 403 gateway_not_trusted", status, body)
	}
}

// TestCheckMalformed: CheckRequests that describe no request are denials
// with a reason, never a panic or a gRPC error.
func TestCheckMalformed(t *testing.T) {
	r := newRig(t, rigOpts{})
	good := func() *authv3.CheckRequest {
		return envoyRequest(r.sign(t, "GET", "/v1/orders/9", "orders.get", nil), nil, shippedSettings(t))
	}
	tests := []struct {
		name       string
		cr         *authv3.CheckRequest
		wantStatus int
		wantReason reason.Code
		wantDetail reason.Detail
	}{
		{"empty", &authv3.CheckRequest{}, 401, reason.RequestBindingMismatch, reason.DetailGatewayMessage},
		{"no request", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}}, 401, reason.RequestBindingMismatch, reason.DetailGatewayMessage},
		{"no http", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}}, 401, reason.RequestBindingMismatch, reason.DetailGatewayMessage},
		{"no method", func() *authv3.CheckRequest { c := good(); c.Attributes.Request.Http.Method = ""; return c }(), 401, reason.RequestBindingMismatch, reason.DetailGatewayMessage},
		{"no path", func() *authv3.CheckRequest { c := good(); c.Attributes.Request.Http.Path = ""; return c }(), 401, reason.RequestBindingMismatch, reason.DetailGatewayMessage},
		{"path without a slash", func() *authv3.CheckRequest { c := good(); c.Attributes.Request.Http.Path = "v1/orders/9"; return c }(), 400, reason.RequestPathNoncanonical, reason.DetailPath},
		{"path with a NUL escape", func() *authv3.CheckRequest { c := good(); c.Attributes.Request.Http.Path = "/v1/orders/%00"; return c }(), 400, reason.RequestPathNoncanonical, reason.DetailPath},
		{"no headers at all", func() *authv3.CheckRequest { c := good(); c.Attributes.Request.Http.HeaderMap = nil; return c }(), 401, reason.PassportMissing, reason.DetailBearerMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(r.records())
			status, _, body := denied(t, r.check(t, tt.cr))
			if status != tt.wantStatus || body["reason"] != string(tt.wantReason) {
				t.Errorf("Check = %d %v, want %d %s", status, body, tt.wantStatus, tt.wantReason)
			}
			recs := r.records()
			if len(recs) != before+1 || recs[len(recs)-1].Decision.Detail != tt.wantDetail {
				t.Errorf("records after: %d, last %v; want one more with detail %s", len(recs), recs[len(recs)-1].Decision, tt.wantDetail)
			}
		})
	}
}

// TestCheckBodies: the body settings Envoy may have. A body route is never
// allowed on a body Envoy cut (allow_partial_message with max_request_bytes
// below --max-body-bytes) or did not send (no with_request_body): each is
// denied with the detail naming the setting, and the hint is logged once
// per kind. A body_hash_from_gateway route takes the caller's hash then. A
// body sent as a string (no pack_as_bytes) that is UTF-8 verifies.
func TestCheckBodies(t *testing.T) {
	r := newRig(t, rigOpts{})
	body := []byte(strings.Repeat(`{"k":"v"}`, 20))
	sign := func(route, target string) *http.Request {
		return r.sign(t, "POST", target, route, body, "Content-Type", "application/json")
	}
	partial := envoySettings{withBody: true, maxRequestBytes: 64, allowPartial: true, packAsBytes: true, encodeRaw: true}
	noBody := envoySettings{encodeRaw: true}
	asString := envoySettings{withBody: true, maxRequestBytes: 1 << 20, encodeRaw: true}
	tests := []struct {
		name       string
		cr         *authv3.CheckRequest
		wantDetail reason.Detail // "" for an allow
	}{
		{"partial body, body route", envoyRequest(sign("orders.create", "/v1/orders"), body, partial), reason.DetailEnvoyPartialMessage},
		{"partial body again", envoyRequest(sign("orders.create", "/v1/orders"), body, partial), reason.DetailEnvoyPartialMessage},
		{"partial body, gateway-hash route", envoyRequest(sign("orders.gw", "/v1/gw"), body, partial), ""},
		{"no with_request_body, body route", envoyRequest(sign("orders.create", "/v1/orders"), body, noBody), reason.DetailEnvoyWithRequestBody},
		{"no with_request_body again", envoyRequest(sign("orders.create", "/v1/orders"), body, noBody), reason.DetailEnvoyWithRequestBody},
		{"no with_request_body, gateway-hash route", envoyRequest(sign("orders.gw", "/v1/gw"), body, noBody), ""},
		{"string body, UTF-8", envoyRequest(sign("orders.create", "/v1/orders"), body, asString), ""},
		{"string body altered", func() *authv3.CheckRequest {
			cr := envoyRequest(sign("orders.create", "/v1/orders"), body, asString)
			cr.Attributes.Request.Http.Body = strings.Replace(cr.Attributes.Request.Http.Body, "v", "w", 1)
			return cr
		}(), reason.DetailEnvoyPackAsBytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := r.check(t, tt.cr)
			recs := r.records()
			got := recs[len(recs)-1].Decision
			if tt.wantDetail == "" {
				okHeaders(t, resp)
				return
			}
			status, _, jbody := denied(t, resp)
			if status != 401 || jbody["reason"] != "request_binding_mismatch" || got.Detail != tt.wantDetail {
				t.Errorf("Check = %d %v, detail %s; want 401 request_binding_mismatch, detail %s", status, jbody, got.Detail, tt.wantDetail)
			}
		})
	}
	logs := r.logs.String()
	for _, d := range []reason.Detail{reason.DetailEnvoyPartialMessage, reason.DetailEnvoyWithRequestBody, reason.DetailEnvoyPackAsBytes} {
		if n := strings.Count(logs, "detail_code="+d.String()); n != 1 {
			t.Errorf("hint %s logged %d times, want once:\n%s", d, n, logs)
		}
	}
	if !strings.Contains(logs, "with_request_body") || !strings.Contains(logs, "pack_as_bytes") || !strings.Contains(logs, "allow_partial_message") {
		t.Errorf("the hints do not name the Envoy settings:\n%s", logs)
	}
}

// TestCheckHeaders: raw headers (encode_raw_headers) against the merged
// map. A covered header sent twice is denied either way, but merged it is
// the detail naming encode_raw_headers, and so is a singleton header
// merged from two field lines; a request without repeated headers passes
// merged too. The pseudo-headers are never covered headers.
func TestCheckHeaders(t *testing.T) {
	r := newRig(t, rigOpts{})
	raw := shippedSettings(t)
	merged := raw
	merged.encodeRaw = false
	twice := func() *http.Request {
		return r.sign(t, "GET", "/v1/orders/5", "orders.get", nil, "X-Tag", "a", "X-Tag", "b")
	}
	twoTypes := func() *http.Request {
		req := r.sign(t, "GET", "/v1/orders/6", "orders.get", nil)
		req.Header["Content-Type"] = []string{"text/plain", "application/json"}
		return req
	}
	tests := []struct {
		name       string
		cr         *authv3.CheckRequest
		wantDetail reason.Detail
	}{
		{"covered header twice, raw", envoyRequest(twice(), nil, raw), reason.DetailHeaderRepeated},
		{"covered header twice, merged", envoyRequest(twice(), nil, merged), reason.DetailEnvoyEncodeRawHeaders},
		{"two Content-Type, merged", envoyRequest(twoTypes(), nil, merged), reason.DetailEnvoyEncodeRawHeaders},
		{"covered header once, merged", envoyRequest(r.sign(t, "GET", "/v1/orders/7", "orders.get", nil, "X-Tag", "a, b"), nil, merged), ""},
		{"covered header once, raw", envoyRequest(r.sign(t, "GET", "/v1/orders/8", "orders.get", nil, "X-Tag", "a"), nil, raw), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := r.check(t, tt.cr)
			recs := r.records()
			got := recs[len(recs)-1].Decision
			if tt.wantDetail == "" {
				okHeaders(t, resp)
				return
			}
			status, _, jbody := denied(t, resp)
			if status != 401 || got.Detail != tt.wantDetail {
				t.Errorf("Check = %d %v, detail %s; want 401, detail %s", status, jbody, got.Detail, tt.wantDetail)
			}
		})
	}
	if n := strings.Count(r.logs.String(), "detail_code="+reason.DetailEnvoyEncodeRawHeaders.String()); n != 1 {
		t.Errorf("encode_raw_headers hint logged %d times, want once", n)
	}
}

// TestCheckAssertion: an allowed request on a route that asks for a backend
// assertion gets X-TrustPlane-Assertion to set upstream, and a caller's
// own is replaced (set, not removed after).
func TestCheckAssertion(t *testing.T) {
	r := newRig(t, rigOpts{assertions: true})
	req := r.sign(t, "GET", "/v1/asserted/4?x=1", "orders.asserted", nil)
	req.Header.Set("X-TrustPlane-Assertion", "caller.made.up")
	set, remove := okHeaders(t, r.check(t, envoyRequest(req, nil, shippedSettings(t))))
	if tok := set["x-trustplane-assertion"]; strings.Count(tok, ".") != 2 || tok == "caller.made.up" {
		t.Errorf("x-trustplane-assertion = %q, want a compact JWS of ours", tok)
	}
	if slices.Contains(remove, "x-trustplane-assertion") {
		t.Error("headers_to_remove lists x-trustplane-assertion: Envoy would remove the assertion it just set")
	}
	if recs := r.records(); len(recs) != 1 || recs[0].AssertionJTI == "" || recs[0].AssertionKID == "" {
		t.Errorf("record %+v: want the assertion's jti and kid", recs)
	}
	// Without the key, the route is denied 503, never allowed without it.
	r2 := newRig(t, rigOpts{})
	status, _, body := denied(t, r2.check(t, envoyRequest(r2.sign(t, "GET", "/v1/asserted/5", "orders.asserted", nil), nil, shippedSettings(t))))
	if status != 503 || body["reason"] != "backend_assertion_unavailable" {
		t.Errorf("no assertion key = %d %v, want 503 backend_assertion_unavailable", status, body)
	}
}

// TestHealth: the gRPC health service answers SERVING for the
// Authorization service.
func TestHealth(t *testing.T) {
	r := newRig(t, rigOpts{})
	resp, err := healthpb.NewHealthClient(r.conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, %v; want SERVING", resp, err)
	}
}

// TestCheckMetrics: gRPC decisions are counted in tpcluster.decisions by
// reason code and timed in tpcluster.decision.duration, like check mode's,
// the refusals before the pipeline included.
func TestCheckMetrics(t *testing.T) {
	r := newRig(t, rigOpts{})
	cr := envoyRequest(r.sign(t, "GET", "/v1/orders/1", "orders.get", nil), nil, shippedSettings(t))
	okHeaders(t, r.check(t, cr))
	denied(t, r.check(t, cr))
	denied(t, r.check(t, &authv3.CheckRequest{}))
	var rm metricdata.ResourceMetrics
	if err := r.metrics.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	var timed uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case "tpcluster.decisions":
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					v, _ := dp.Attributes.Value("reason_code")
					counts[v.AsString()] += dp.Value
				}
			case "tpcluster.decision.duration":
				for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
					timed += dp.Count
				}
			}
		}
	}
	if counts["allowed"] != 1 || counts["jti_replay"] != 1 || counts["request_binding_mismatch"] != 1 {
		t.Errorf("tpcluster.decisions by reason = %v, want one allowed, jti_replay, request_binding_mismatch", counts)
	}
	if timed != 2 {
		t.Errorf("tpcluster.decision.duration has %d observations, want 2 (the pipeline's decisions)", timed)
	}
}
