package extauthz

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tpcluster/tpcluster/internal/assertion"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/proxy"
	"github.com/tpcluster/tpcluster/internal/proxy/proxytest"
	"github.com/tpcluster/tpcluster/internal/signer"
	"github.com/tpcluster/tpcluster/internal/testlog"
	"github.com/tpcluster/tpcluster/internal/transcript"
)

const (
	tIssuer      = "https://issuer.envoy.example"
	tDomain      = "envoy.local"
	tAudience    = "orders-api"
	tSubject     = "spiffe://envoy.local/workload/orders"
	tFleetIssuer = "https://verifiers.envoy.example"
	tAuthority   = "api.envoy.example:8080"
)

// rig is the gRPC server over a real proxy.Handler, a real pipeline and a
// real replay ledger on an embedded NATS server, reached by a real gRPC
// client over loopback.
type rig struct {
	key     *signer.Key
	srv     *Server
	metrics *sdkmetric.ManualReader
	client  authv3.AuthorizationClient
	conn    *grpc.ClientConn
	logs    *testlog.Buffer

	mu   sync.Mutex
	recs []proxy.Record
}

type rigOpts struct {
	trusted      []netip.Prefix // nil: the default (loopback)
	maxBodyBytes int64          // 0: 1 MiB
	assertions   bool
}

func newRig(t testing.TB, o rigOpts) *rig {
	t.Helper()
	key, err := signer.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{key: key, logs: &testlog.Buffer{}, metrics: sdkmetric.NewManualReader()}
	pipe := proxytest.Pipeline(t, proxytest.World{Issuer: tIssuer, TrustDomain: tDomain, Audience: tAudience, Subject: tSubject, Key: key},
		[]proxytest.Route{
			{ID: "orders.create", Method: "POST", Path: "/v1/orders"},
			{ID: "orders.get", Method: "GET", Path: "/v1/orders/{id}"},
			{ID: "orders.gw", Method: "POST", Path: "/v1/gw", Extra: map[string]any{"body_hash_from_gateway": true}},
			{ID: "orders.asserted", Method: "GET", Path: "/v1/asserted/{id}", Extra: map[string]any{
				"backend_assertion": map[string]any{"audience": "orders-backend", "ttl_seconds": 30}}},
		}, nil)
	cfg := proxy.Config{
		Decider:        pipe,
		MaxBodyBytes:   o.maxBodyBytes,
		TrustedProxies: o.trusted,
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.metrics)),
		Record: func(_ context.Context, rec *proxy.Record) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.recs = append(r.recs, *rec)
			return nil
		},
	}
	if o.assertions {
		k, err := keyfile.Generate("node-envoy-1")
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Assertions, err = assertion.New(assertion.Config{Issuer: tFleetIssuer, Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	h, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Gateway: h, Logger: slog.New(slog.NewTextHandler(r.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	r.srv = srv
	g := grpc.NewServer()
	srv.Register(g)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = g.Serve(ln) })
	t.Cleanup(func() {
		g.Stop()
		wg.Wait()
	})
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r.conn, r.client = conn, authv3.NewAuthorizationClient(conn)
	return r
}

// records returns the decisions recorded so far.
func (r *rig) records() []proxy.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.recs)
}

// check sends req and fails the test on a gRPC error: every outcome must
// be a CheckResponse.
func (r *rig) check(t testing.TB, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	resp, err := r.client.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

// sign returns a request to http://tAuthority+target signed as the SDKs'
// ProtectedClient does, covering hdrs (name, value pairs) and the nonce;
// the headers are added in order, so a name given twice is sent twice and
// its first value is covered.
func (r *rig) sign(t testing.TB, method, target, routeID string, body []byte, hdrs ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+tAuthority+target, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var hs []transcript.Header
	for i := 0; i+1 < len(hdrs); i += 2 {
		if req.Header.Get(hdrs[i]) == "" {
			hs = append(hs, transcript.Header{Name: hdrs[i], Value: hdrs[i+1]})
		}
		req.Header.Add(hdrs[i], hdrs[i+1])
	}
	tok, err := r.key.MintPassport(signer.PassportOptions{Issuer: tIssuer, Subject: tSubject, Audience: tAudience,
		TrustDomain: tDomain, KID: "k1", IssuedAt: time.Now(), TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.key.Sign(tok, &signer.Request{Method: method, Scheme: "http", Authority: tAuthority,
		Path: req.URL.EscapedPath(), RawQuery: req.URL.RawQuery, Body: body, Headers: hs, RouteID: routeID})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range s.Headers {
		req.Header.Set(h.Name, h.Value)
	}
	return req
}

// envoyRequest is the CheckRequest Envoy's ext_authz filter sends for req
// (whose body is body) under settings s, as Envoy's documentation and its
// check_request_utils describe it: the request line in method, path (the
// raw target with its query), host (:authority) and scheme; the HTTP/1
// codec's Host as the :authority pseudo-header; the connection manager's
// own x-forwarded-proto and x-request-id; header names in lower case;
// with encode_raw_headers every field line in header_map as raw_value
// bytes, else the headers map with a repeated name's values joined by
// ","; with with_request_body the body (cut at max_request_bytes) in
// raw_body (pack_as_bytes) or body, and x-envoy-auth-partial-body saying
// whether it was cut.
func envoyRequest(req *http.Request, body []byte, s envoySettings) *authv3.CheckRequest {
	target := req.URL.RequestURI()
	type kv struct{ k, v string }
	lines := []kv{{":authority", req.URL.Host}, {":path", target}, {":method", req.Method}, {":scheme", "http"}}
	for _, k := range slices.Sorted(maps.Keys(req.Header)) {
		for _, v := range req.Header[k] {
			lines = append(lines, kv{strings.ToLower(k), v})
		}
	}
	if len(body) > 0 {
		lines = append(lines, kv{"content-length", strconv.Itoa(len(body))})
	}
	lines = append(lines, kv{"x-forwarded-proto", "http"}, kv{"x-request-id", "4c1f7a9e-0d2b-4f5e-9a77-" + strconv.FormatInt(time.Now().UnixNano()%1e12, 10)})
	hr := &authv3.AttributeContext_HttpRequest{
		Id: "17", Method: req.Method, Path: target, Host: req.URL.Host, Scheme: "http",
		Size: int64(len(body)), Protocol: "HTTP/1.1",
	}
	if len(body) == 0 {
		hr.Size = 0
	}
	partial := ""
	if s.withBody && len(body) > 0 {
		cut := body
		if s.maxRequestBytes > 0 && int64(len(body)) > s.maxRequestBytes {
			cut = body[:s.maxRequestBytes]
		}
		partial = strconv.FormatBool(len(cut) != len(body))
		if s.packAsBytes {
			hr.RawBody = cut
		} else {
			hr.Body = string(cut)
		}
	}
	if partial != "" {
		lines = append(lines, kv{partialBodyHeader, partial})
	}
	if s.encodeRaw {
		hm := &corev3.HeaderMap{}
		for _, l := range lines {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: l.k, RawValue: []byte(l.v)})
		}
		hr.HeaderMap = hm
	} else {
		hr.Headers = map[string]string{}
		for _, l := range lines {
			if prev, ok := hr.Headers[l.k]; ok {
				hr.Headers[l.k] = prev + "," + l.v
			} else {
				hr.Headers[l.k] = l.v
			}
		}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "198.51.100.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51234}}}}},
		Request: &authv3.AttributeContext_Request{Time: timestamppb.Now(), Http: hr},
	}}
}

// denied returns the status, reason header and JSON body of a denial, or
// fails.
func denied(t testing.TB, resp *authv3.CheckResponse) (int, map[string]string, map[string]any) {
	t.Helper()
	d := resp.GetDeniedResponse()
	if d == nil || resp.GetStatus().GetCode() == 0 {
		t.Fatalf("want a denial, got %v", resp)
	}
	hdr := map[string]string{}
	for _, h := range d.GetHeaders() {
		hdr[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
		t.Fatalf("deny body %q: %v", d.GetBody(), err)
	}
	return int(d.GetStatus().GetCode()), hdr, body
}
