// Package extauthz is verifierd's Envoy face: the ext_authz v3 gRPC
// Authorization service (envoy.service.auth.v3.Authorization/Check) on
// --grpc-listen (docs/ENVOY.md).
//
// It is a thin adapter, like check mode: it rebuilds the caller's request
// from a CheckRequest's attributes.request.http exactly as Envoy documents
// the fields, hands it to internal/proxy (trust, pre-checks, pipeline,
// assertion, audit record, telemetry: proxy.Handler.CheckGateway), and
// turns the answer into a CheckResponse. It decides nothing itself, never
// talks to NATS, and never panics on a malformed message: that is a denial
// with a reason.
package extauthz

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/tpcluster/tpcluster/internal/proxy"
)

// Gateway decides a rebuilt request; *proxy.Handler is one.
type Gateway interface {
	CheckGateway(ctx context.Context, gr *proxy.GatewayRequest, ownForwarding func(folded string) bool) proxy.GatewayAnswer
}

// Config configures a Server.
type Config struct {
	// Gateway decides requests. Required.
	Gateway Gateway
	// Logger; nil discards. The Envoy configuration hints (a missing
	// setting seen in a CheckRequest) are logged once per kind at Warn.
	Logger *slog.Logger
}

// Server is the Authorization service. It is safe for concurrent use.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	gw     Gateway
	log    *slog.Logger
	hints  [hintKinds]sync.Once
	health *health.Server
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Gateway == nil {
		return nil, errors.New("extauthz: no gateway")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{gw: cfg.Gateway, log: cfg.Logger, health: health.NewServer()}, nil
}

// Register registers the Authorization service and the gRPC health
// service (grpc.health.v1, serving "" and the Authorization service name)
// on g.
func (s *Server) Register(g *grpc.Server) {
	authv3.RegisterAuthorizationServer(g, s)
	healthpb.RegisterHealthServer(g, s.health)
	s.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
}

// Shutdown makes the health service answer NOT_SERVING, so Envoy's health
// checks take the node out before its listener closes.
func (s *Server) Shutdown() { s.health.Shutdown() }

// Check answers one CheckRequest. It never returns an error: every
// outcome, a malformed message included, is a CheckResponse (a gRPC error
// would become Envoy's status_on_error, without reason or audit event).
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	gr := s.rebuild(req)
	gr.Peer = peerAddr(ctx)
	ans := s.gw.CheckGateway(ctx, gr, envoyForwarding)
	return response(&ans), nil
}

// envoyForwarding reports the forwarding headers Envoy's HTTP connection
// manager sets itself (use_remote_address): they are left to it; every
// other X-Forwarded-*, Forwarded and X-Real-IP of the caller is removed.
func envoyForwarding(folded string) bool {
	return folded == "x-forwarded-for" || folded == "x-forwarded-proto"
}

func peerAddr(ctx context.Context) netip.Addr {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return netip.Addr{}
	}
	if ta, ok := p.Addr.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, err := netip.ParseAddrPort(p.Addr.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// response turns the handler's answer into a CheckResponse: an
// OkHttpResponse with the headers to set and remove, or a
// DeniedHttpResponse with the SPEC §6 status, JSON body, X-TrustPlane-Reason
// and X-Request-Id.
func response(ans *proxy.GatewayAnswer) *authv3.CheckResponse {
	d := &ans.Decision
	if d.Allowed() {
		ok := &authv3.OkHttpResponse{HeadersToRemove: ans.Remove}
		for _, k := range sortedKeys(ans.Set) {
			ok.Headers = append(ok.Headers, headerOption(k, ans.Set.Get(k)))
		}
		return &authv3.CheckResponse{
			Status:       &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
		}
	}
	hdr, body := proxy.DenyResponse(d, ans.RequestID)
	hdr.Set("X-TrustPlane-Reason", string(d.Reason))
	hdr.Del("Content-Length") // Envoy sets it for the body it sends
	denied := &authv3.DeniedHttpResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode(d.Status)},
		Body:   string(body),
	}
	for _, k := range sortedKeys(hdr) {
		denied.Headers = append(denied.Headers, headerOption(k, hdr.Get(k)))
	}
	code := codes.PermissionDenied
	if d.Status == http.StatusUnauthorized {
		code = codes.Unauthenticated
	}
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(code), Message: string(d.Reason)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: denied},
	}
}

// headerOption is one header Envoy sets, replacing any of that name.
func headerOption(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: strings.ToLower(k), Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

func sortedKeys(h http.Header) []string { return slices.Sorted(maps.Keys(h)) }

// originalLength returns the single content-length value as a plain
// decimal, or -1.
func originalLength(h http.Header) int64 {
	v := h.Values("Content-Length")
	if len(v) != 1 || v[0] == "" || len(v[0]) > 18 {
		return -1
	}
	n, err := strconv.ParseInt(v[0], 10, 64)
	if err != nil || n < 0 || strings.TrimLeft(v[0], "0123456789") != "" {
		return -1
	}
	return n
}
