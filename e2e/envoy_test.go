package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/testport"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// envoyCheck is the CheckRequest Envoy's ext_authz filter sends for req
// under deploy/envoy/envoy.yaml's settings (encode_raw_headers,
// with_request_body with pack_as_bytes; internal/extauthz's
// TestShippedEnvoyConfig checks the file has them): the request line in
// its fields, :authority and the other pseudo-headers, lower-case names,
// one header_map entry per field line as raw_value, Envoy's own
// x-forwarded-proto and x-request-id, the body in raw_body with
// x-envoy-auth-partial-body.
func envoyCheck(req *http.Request, body []byte, requestID string) *authv3.CheckRequest {
	target := req.URL.RequestURI()
	hm := &corev3.HeaderMap{}
	add := func(k, v string) { hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)}) }
	add(":authority", req.URL.Host)
	add(":path", target)
	add(":method", req.Method)
	add(":scheme", "http")
	for _, k := range slices.Sorted(maps.Keys(req.Header)) {
		for _, v := range req.Header[k] {
			add(strings.ToLower(k), v)
		}
	}
	if len(body) > 0 {
		add("content-length", strconv.Itoa(len(body)))
	}
	add("x-forwarded-proto", "http")
	add("x-request-id", requestID)
	hr := &authv3.AttributeContext_HttpRequest{Id: "1", Method: req.Method, Path: target, Host: req.URL.Host,
		Scheme: "http", Protocol: "HTTP/1.1", Size: int64(len(body)), HeaderMap: hm}
	if len(body) > 0 {
		hr.RawBody = body
		add("x-envoy-auth-partial-body", "false")
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: hr}}}
}

// TestEnvoyGRPC drives the real verifierd binary's --grpc-listen with
// Envoy-shaped CheckRequests: an allowed signed GET and POST (the answer
// sets the context headers and removes the proof headers), the replay
// (409), a missing passport (401), an altered body (401), a malformed
// message (401 gateway_message); then every decision's audit event is
// read back from the node's NATS audit stream by request id, with its
// reason and detail code.
func TestEnvoyGRPC(t *testing.T) {
	w := newWorld(t, "envoy-a")
	addrs := testport.Addrs(t, 2)
	natsAddr, grpcAddr := addrs[0], addrs[1]
	dataDir := t.TempDir()
	startVerifierd(t, w, true, "--grpc-listen", grpcAddr, "--nats-listen", natsAddr, "--data-dir", dataDir, "--node-id", "envoy-a")
	url := "nats://" + natsAddr
	useEmbeddedCreds(t, url, dataDir)

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	check := func(cr *authv3.CheckRequest) *authv3.CheckResponse {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		resp, err := client.Check(ctx, cr)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return resp
	}
	const base = "http://api.e2e.example:8080"
	type want struct {
		reason, detail string
		status         int
	}
	wants := map[string]want{} // by request id
	// run sends cr, whose x-request-id is id ("" for a message without
	// one), and checks the answer against w.
	run := func(name string, cr *authv3.CheckRequest, id string, w want) *authv3.CheckResponse {
		t.Helper()
		resp := check(cr)
		if w.reason == "allowed" {
			ok := resp.GetOkResponse()
			if ok == nil || resp.GetStatus().GetCode() != int32(codes.OK) {
				t.Fatalf("%s: want an allow, got %v", name, resp)
			}
			set := map[string]string{}
			for _, h := range ok.GetHeaders() {
				set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			}
			if set["x-trustplane-subject"] != wSubject || set["x-request-id"] != id {
				t.Errorf("%s: headers to set %v, want the subject and x-request-id %s", name, set, id)
			}
			for _, h := range []string{"authorization", "x-trustplane-proof", "x-trustplane-nonce"} {
				if !slices.Contains(ok.GetHeadersToRemove(), h) {
					t.Errorf("%s: headers_to_remove %v lacks %s", name, ok.GetHeadersToRemove(), h)
				}
			}
		} else {
			d := resp.GetDeniedResponse()
			var body map[string]any
			_ = json.Unmarshal([]byte(d.GetBody()), &body)
			if int(d.GetStatus().GetCode()) != w.status || body["reason"] != w.reason {
				t.Errorf("%s: %d %s, want %d %s", name, d.GetStatus().GetCode(), d.GetBody(), w.status, w.reason)
			}
			if id == "" {
				id, _ = body["request_id"].(string)
			} else if body["request_id"] != id {
				t.Errorf("%s: deny body request_id %v, want Envoy's %s", name, body["request_id"], id)
			}
		}
		wants[id] = w
		return resp
	}
	n := 0
	next := func() string { n++; return fmt.Sprintf("envoy-e2e-%d-%d", time.Now().UnixNano(), n) }

	start := time.Now()
	get := w.signed(t, "GET", base+"/v1/orders/ord_1?b=2&a=1", "orders.get", nil)
	id := next()
	run("allowed GET", envoyCheck(get, nil, id), id, want{reason: "allowed"})
	id = next()
	run("replay", envoyCheck(get, nil, id), id, want{"jti_replay", "jti_consumed", 409})

	body := []byte(`{"order_id":"ord_2"}`)
	post := w.signed(t, "POST", base+"/v1/orders", "orders.create", body, "Content-Type", "application/json")
	id = next()
	run("allowed POST with its body", envoyCheck(post, body, id), id, want{reason: "allowed"})

	altered := w.signed(t, "POST", base+"/v1/orders", "orders.create", body, "Content-Type", "application/json")
	id = next()
	run("altered body", envoyCheck(altered, []byte(`{"order_id":"ord_X"}`), id), id, want{"request_binding_mismatch", "body_hash", 401})

	bare, _ := http.NewRequest("GET", base+"/v1/orders/ord_3", nil)
	id = next()
	run("no passport", envoyCheck(bare, nil, id), id, want{"passport_missing", "bearer_missing", 401})

	run("malformed CheckRequest", &authv3.CheckRequest{}, "", want{"request_binding_mismatch", "gateway_message", 401})
	t.Logf("%d checks answered in %v", len(wants), time.Since(start))

	// Every decision reaches the audit stream, by request id.
	found := time.Now()
	testwait.Until(t, 90*time.Second, "every gRPC decision's audit event", func() error {
		msgs := readAudit(t, url)
		byID := map[string]*audit.Event{}
		for _, m := range msgs {
			if m.ev.NodeID == "envoy-a" && m.ev.RequestID != "" {
				byID[m.ev.RequestID] = m.ev
			}
		}
		for id, w := range wants {
			ev := byID[id]
			if ev == nil {
				return fmt.Errorf("no audit event for request %s (%s)", id, w.reason)
			}
			if string(ev.ReasonCode) != w.reason || string(ev.DetailCode) != w.detail {
				t.Fatalf("audit event of %s: %s/%s, want %s/%s", id, ev.ReasonCode, ev.DetailCode, w.reason, w.detail)
			}
		}
		return nil
	})
	t.Logf("all %d audit events in the stream %v after the last answer", len(wants), time.Since(found))
}
