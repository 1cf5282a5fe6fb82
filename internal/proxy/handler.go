package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/tpcluster/tpcluster/internal/assertion"
	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/egress"
	"github.com/tpcluster/tpcluster/internal/reason"
)

// Decider decides one request; *core.Pipeline is one.
type Decider interface {
	Decide(ctx context.Context, r *core.Request) core.Decision
}

// Record is what the handler reports for every decision, before it answers
// (SPEC §9: the event is recorded before the response is sent).
type Record struct {
	Decision  *core.Decision
	RequestID string
	Method    string
	Path      string // raw path, no query
	Latency   time.Duration
	TraceID   string
	// EventID, when set, is the audit event's id: set when an assertion
	// names the event before it is recorded.
	EventID string
	// AssertionJTI and AssertionKID identify the backend assertion minted
	// for an allow; empty when none was (docs/AUDIT.md).
	AssertionJTI string
	AssertionKID string
	// Egress describes the provider token of an egress route's request
	// (docs/OAUTH-EGRESS.md): set on the allow that got one, and on the
	// egress_token_unavailable denial that did not (provider and grant
	// only). Nil for routes without egress.
	Egress *EgressRecord
}

// EgressRecord is what the audit event says of a provider token; never
// the token itself.
type EgressRecord struct {
	Provider string
	Grant    string
	Scopes   []string // as requested
	Audience string
	// Lifetime is the expires_in the provider gave; zero on failure.
	Lifetime    time.Duration
	FromCache   bool
	TokenSHA256 string // lowercase hex; empty on failure
}

// EgressTokens obtains provider tokens for egress routes
// (docs/OAUTH-EGRESS.md); *egress.Client is one.
type EgressTokens interface {
	Token(ctx context.Context, r *egress.Request) (egress.Token, error)
}

// AssertionMinter mints backend assertions (docs/BACKEND-JWT.md);
// *assertion.Minter is one.
type AssertionMinter interface {
	Mint(r *assertion.Request) (assertion.Minted, error)
	// JWKSDocument is the fleet's key set, served at /_tp/jwks.json.
	JWKSDocument() []byte
}

// Config configures a Handler. Zero values are documented per field.
type Config struct {
	// Decider decides requests. Required.
	Decider Decider
	// Upstream is where proxy mode forwards allowed requests. If nil, only
	// /_tp/ endpoints are served (check mode).
	Upstream *url.URL
	// Transport reaches the upstream. If nil, a transport with dial and
	// response header timeouts.
	Transport http.RoundTripper
	// MaxBodyBytes bounds a request body (SPEC §4). If zero, 1 MiB.
	MaxBodyBytes int64
	// MaxBodyMemoryBytes bounds the body bytes buffered at once across all
	// requests (--max-body-memory-bytes); a request that would pass it is
	// refused verifier_overloaded (503). It must be at least MaxBodyBytes.
	// If zero, DefaultMaxBodyMemoryBytes (or MaxBodyBytes, if larger).
	MaxBodyMemoryBytes int64
	// BodyReadTimeout, if set, bounds reading a body from the moment the
	// handler starts reading it, so a slow client cannot pin a node. If
	// zero, the server's ReadTimeout alone governs (verifierd sets it).
	BodyReadTimeout time.Duration
	// TrustedProxies are the peers whose X-Forwarded-Proto/-Host are
	// honoured and who may call /_tp/check. If nil, 127.0.0.1/32 and ::1/128.
	TrustedProxies []netip.Prefix
	// ExternalScheme, when set, is the scheme of every request (a plain
	// HTTP listener behind a TLS terminator).
	ExternalScheme string
	// ForwardProofHeaders keeps Authorization and the proof headers on
	// forwarded requests.
	ForwardProofHeaders bool
	// Assertions mints the backend assertion of an allowed request whose
	// route asks for one. If nil, such requests are denied
	// backend_assertion_unavailable and /_tp/jwks.json is 404.
	Assertions AssertionMinter
	// Egress obtains the provider token of an allowed request whose route
	// has an egress block. If nil, such requests are denied
	// egress_token_unavailable.
	Egress EgressTokens
	// Record records each decision; an error fails the request closed. If
	// nil, nothing is recorded.
	Record func(ctx context.Context, rec *Record) error
	// Ready reports readiness for /_tp/readyz. If nil, always ready.
	Ready func(ctx context.Context, strict bool) (ready bool, body any)
	// Metrics serves /_tp/metrics. If nil, 404.
	Metrics http.Handler
	// TracerProvider and MeterProvider; nil means no-op.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	// Logger; nil discards.
	Logger *slog.Logger
}

// Handler serves proxy mode, check mode and /_tp/. It is safe for
// concurrent use.
type Handler struct {
	cfg   Config
	proxy *httputil.ReverseProxy
	tel   *telemetry
	log   *slog.Logger
	mem   *bodyMemory
	// egressLog limits the egress failure warnings.
	egressLog logLimit
}

// DefaultTrustedProxies is the default of --trusted-proxies (SPEC §10.2).
func DefaultTrustedProxies() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
}

// New checks cfg and returns a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Decider == nil {
		return nil, errors.New("proxy: no decider")
	}
	if cfg.MaxBodyBytes < 0 {
		return nil, errors.New("proxy: negative body limit")
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	switch {
	case cfg.MaxBodyMemoryBytes < 0:
		return nil, errors.New("proxy: negative body memory limit")
	case cfg.MaxBodyMemoryBytes == 0:
		cfg.MaxBodyMemoryBytes = max(DefaultMaxBodyMemoryBytes, cfg.MaxBodyBytes)
	case cfg.MaxBodyMemoryBytes < cfg.MaxBodyBytes:
		// A body of the allowed size could never be buffered.
		return nil, fmt.Errorf("proxy: body memory limit %d is below the body limit %d", cfg.MaxBodyMemoryBytes, cfg.MaxBodyBytes)
	}
	if cfg.TrustedProxies == nil {
		cfg.TrustedProxies = DefaultTrustedProxies()
	}
	cfg.TrustedProxies = unmapPrefixes(cfg.TrustedProxies)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	mem := &bodyMemory{limit: cfg.MaxBodyMemoryBytes}
	tel, err := newTelemetry(cfg.TracerProvider, cfg.MeterProvider, mem)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	h := &Handler{cfg: cfg, tel: tel, log: cfg.Logger, mem: mem, egressLog: logLimit{interval: 5 * time.Second}}
	if cfg.Upstream != nil {
		if cfg.Transport == nil {
			cfg.Transport = defaultTransport()
			h.cfg.Transport = cfg.Transport
		}
		h.proxy = &httputil.ReverseProxy{
			Rewrite:        h.rewrite,
			Transport:      cfg.Transport,
			ErrorHandler:   h.upstreamError,
			ModifyResponse: setResponseRequestID,
			BufferPool:     newBufferPool(),
		}
	}
	return h, nil
}

// unmapPrefixes returns prefixes with each IPv4-mapped IPv6 prefix
// (::ffff:10.0.0.0/104) written as the IPv4 prefix it covers: peers are
// compared unmapped, so the mapped form would never match one.
func unmapPrefixes(prefixes []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(prefixes))
	for i, p := range prefixes {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked()
		}
		out[i] = p
	}
	return out
}

func defaultTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // the upstream is ours; never an environment proxy
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   256,
		ForceAttemptHTTP2:     false,
		// Without this the transport adds "Accept-Encoding: gzip" to a
		// request that has none: a header the caller never sent reaching
		// the upstream (what is verified is what is forwarded). A caller's
		// own Accept-Encoding still goes through, and its answer untouched.
		DisableCompression: true,
	}
}

// ServeHTTP routes /_tp/ endpoints and verifies everything else.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, _ := splitTarget(r.RequestURI)
	switch {
	case path == "/_tp/healthz":
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	case path == "/_tp/readyz":
		h.serveReady(w, r)
	case path == "/_tp/metrics":
		if h.cfg.Metrics == nil {
			http.NotFound(w, r)
			return
		}
		h.cfg.Metrics.ServeHTTP(w, r)
	case path == "/_tp/check":
		h.serveCheck(w, r)
	case path == "/_tp/jwks.json":
		h.serveJWKS(w, r)
	case strings.HasPrefix(path, "/_tp/"):
		http.NotFound(w, r)
	case h.proxy == nil:
		http.Error(w, "verifierd has no --upstream: use /_tp/check", http.StatusNotFound)
	default:
		h.serveProxy(w, r)
	}
}

// scheme is the scheme the caller addressed (SPEC §4).
func (h *Handler) scheme(r *http.Request, trustedPeer bool) string {
	if h.cfg.ExternalScheme != "" {
		return h.cfg.ExternalScheme
	}
	if trustedPeer {
		if p := r.Header.Get("X-Forwarded-Proto"); p != "" {
			return strings.ToLower(strings.TrimSpace(p))
		}
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

func (h *Handler) authority(r *http.Request, trustedPeer bool) string {
	if trustedPeer {
		if v := r.Header.Get("X-Forwarded-Host"); v != "" {
			return v
		}
	}
	return r.Host
}

// upstreamAuth is what an allowed request carries upstream besides the
// request itself: the backend assertion, the provider token.
type upstreamAuth struct {
	assertion   string // "" when the route asks for none
	egressToken string // "" when the route has no egress
}

// decide runs the pipeline inside a span, mints the backend assertion the
// route asks for, obtains the provider token of an egress route (check
// mode: refuses it), records the decision and the metrics. A failed record
// turns any decision into a closed failure. target is the request target
// the upstream receives. check is true for check mode and the gateway
// path, which serve no egress route. refine, if set, sees a denial before
// it is recorded and may name its cause more precisely (the gRPC gateway
// names the Envoy setting that caused it).
func (h *Handler) decide(ctx context.Context, cr *core.Request, reqID, target string, check bool, refine func(*core.Decision)) (core.Decision, upstreamAuth) {
	start := time.Now()
	ctx, span := h.tel.tracer.Start(ctx, "tpcluster.decide", trace.WithSpanKind(trace.SpanKindServer))
	d := h.cfg.Decider.Decide(ctx, cr)
	if refine != nil && !d.Allowed() {
		refine(&d)
	}
	rec := &Record{Decision: &d, RequestID: reqID, Method: cr.Method, Path: cr.RawPath, TraceID: traceID(span)}
	var up upstreamAuth
	if d.Allowed() && d.Egress != nil && check {
		// Before the assertion: nothing is minted for a request that is
		// refused anyway.
		h.denyEgress(&d, rec, reason.DetailEgressCheckMode,
			errors.New("the route bridges to a provider's OAuth, which check mode does not do; serve it in proxy mode"))
	}
	if d.Allowed() && d.BackendAssertion != nil {
		// After the consume (Decide has done it): an assertion exists only
		// for a request that was allowed exactly once.
		up.assertion = h.mint(&d, rec, target)
	}
	if d.Allowed() && d.Egress != nil {
		// After the consume and the assertion: a provider token is only
		// ever asked for on behalf of a verified, consumed request.
		up.egressToken = h.egressToken(ctx, &d, rec, up.assertion)
	}
	rec.Latency = time.Since(start)
	if h.cfg.Record != nil {
		if err := h.cfg.Record(ctx, rec); err != nil {
			h.log.Error("audit record failed; failing closed", "request_id", reqID, "err", err)
			d = auditFailed(d, err)
			up = upstreamAuth{}
		}
	}
	h.tel.observe(ctx, span, &d)
	span.End()
	h.logDecision(ctx, &d, reqID, rec.Latency)
	return d, up
}

// egressToken obtains d's provider token and describes it in rec. On
// failure d becomes an egress_token_unavailable denial: the upstream
// accepts nothing else, so nothing goes without it.
func (h *Handler) egressToken(ctx context.Context, d *core.Decision, rec *Record, assertion string) string {
	spec := d.Egress
	if h.cfg.Egress == nil {
		h.denyEgress(d, rec, reason.DetailEgressToken, errors.New("the route has an egress block and the node has no egress client"))
		return ""
	}
	tok, err := h.cfg.Egress.Token(ctx, &egress.Request{
		Spec: spec, RouteID: d.RouteID, Subject: d.Subject, KeyBinding: d.KeyBinding, SubjectToken: assertion,
	})
	if err != nil {
		h.denyEgress(d, rec, reason.DetailEgressToken, err)
		return ""
	}
	rec.Egress = &EgressRecord{
		Provider: spec.Provider.ID, Grant: string(spec.Grant), Scopes: spec.Scope, Audience: spec.Audience,
		Lifetime: tok.Lifetime, FromCache: tok.FromCache, TokenSHA256: tok.SHA256,
	}
	return tok.AccessToken
}

// denyEgress turns d into an egress_token_unavailable denial whose record
// names the provider and grant.
func (h *Handler) denyEgress(d *core.Decision, rec *Record, detail reason.Detail, err error) {
	spec := d.Egress
	rec.Egress = &EgressRecord{Provider: spec.Provider.ID, Grant: string(spec.Grant)}
	if ok, dropped := h.egressLog.allow(time.Now()); ok {
		h.log.Warn("egress token not obtained; denying", "request_id", rec.RequestID, "route_id", d.RouteID,
			"provider", spec.Provider.ID, "err", err, "suppressed", dropped)
	}
	d.Outcome = core.Deny
	d.Reason = reason.EgressTokenUnavailable
	d.Status = reason.EgressTokenUnavailable.HTTPStatus()
	d.Detail = detail
	d.Err = err
}

// mint mints d's backend assertion, naming the audit event rec will be
// recorded as. On failure d becomes a backend_assertion_unavailable denial:
// the upstream expects the assertion, so nothing goes without it.
func (h *Handler) mint(d *core.Decision, rec *Record, target string) string {
	fail := func(err error) string {
		h.log.Error("backend assertion not minted; denying", "request_id", rec.RequestID, "route_id", d.RouteID, "err", err)
		d.Outcome = core.Deny
		d.Reason = reason.BackendAssertionUnavailable
		d.Status = reason.BackendAssertionUnavailable.HTTPStatus()
		d.Detail = reason.DetailAssertionKey
		d.Err = err
		return ""
	}
	if h.cfg.Assertions == nil {
		return fail(errors.New("the route asks for a backend assertion and the node has no --assertion-key or --assertion-key-dir"))
	}
	id, err := uuid.NewV7()
	if err != nil {
		return fail(fmt.Errorf("event id: %w", err))
	}
	rec.EventID = id.String()
	m, err := h.cfg.Assertions.Mint(&assertion.Request{
		Spec: d.BackendAssertion, Subject: d.Subject, PassportJTI: d.JTI, RouteID: d.RouteID,
		Method: rec.Method, Target: target, TranscriptSHA256: d.TranscriptSHA256,
		KeyBinding: d.KeyBinding, TrustDomain: d.TrustDomain, EventID: rec.EventID, RequestID: rec.RequestID,
	})
	if err != nil {
		return fail(err)
	}
	rec.AssertionJTI, rec.AssertionKID = m.JTI, m.KID
	return m.Token
}

// serveJWKS serves the fleet's assertion keys (RFC 7517), the same on every
// node; upstreams cache them for a minute.
func (h *Handler) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Assertions == nil {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body := h.cfg.Assertions.JWKSDocument()
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "max-age=60")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// logDecision writes the debug line every decision gets (--log-level
// debug): the audit event's codes, so an operator following the log sees
// why a request was denied without reading the stream. Not even at debug
// does it carry the path, headers or passport: request_id leads to the
// audit event, which has what may be recorded.
func (h *Handler) logDecision(ctx context.Context, d *core.Decision, reqID string, lat time.Duration) {
	if !h.log.Enabled(ctx, slog.LevelDebug) {
		return // no attribute is built on the hot path
	}
	attrs := []slog.Attr{
		slog.String("request_id", reqID),
		slog.String("outcome", d.Outcome.String()),
		slog.String("reason_code", d.Reason.String()),
		slog.Int("status", d.Status),
		slog.String("route_id", d.RouteID),
		slog.Int64("latency_us", lat.Microseconds()),
	}
	if d.Outcome == core.Deny {
		attrs = append(attrs, slog.String("detail_code", d.Detail.String()))
		if d.Err != nil {
			attrs = append(attrs, slog.String("detail_reason", d.Err.Error()))
		}
	}
	h.log.LogAttrs(ctx, slog.LevelDebug, "decision", attrs...)
}

func traceID(span trace.Span) string {
	if sc := span.SpanContext(); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return ""
}

// serveProxy is proxy mode (SPEC §10.2).
func (h *Handler) serveProxy(w http.ResponseWriter, r *http.Request) {
	reqID := requestID(r)
	path, query := splitTarget(r.RequestURI)
	if detail, err := preCheck(r.Method, r.Header); err != nil {
		h.denyEarly(w, r, &Record{RequestID: reqID, Method: r.Method, Path: path}, reason.RequestBindingMismatch, detail, err, false)
		return
	}
	b, err := h.readBody(w, r)
	defer b.done() // after the upstream has the body
	if errors.Is(err, errBodyMemory) {
		h.denyEarly(w, r, &Record{RequestID: reqID, Method: r.Method, Path: path}, reason.VerifierOverloaded, reason.DetailBodyMemory, err, false)
		return
	}
	if err != nil {
		// The client went away or stalled past the read timeout: there is
		// no request to decide.
		w.Header().Set("X-Request-Id", reqID)
		http.Error(w, "request body could not be read", http.StatusBadRequest)
		return
	}
	read := time.Now() // the request is read: the decision's own time starts
	trustedPeer := trusted(h.cfg.TrustedProxies, r)
	cr := &core.Request{
		Method:       r.Method,
		Scheme:       h.scheme(r, trustedPeer),
		Authority:    h.authority(r, trustedPeer),
		RawPath:      path,
		RawQuery:     query,
		Header:       endToEnd(r.Header),
		Body:         b.bytes,
		BodyTooLarge: b.tooLarge,
	}
	d, up := h.decide(r.Context(), cr, reqID, upstreamTarget(r.RequestURI), false, nil)
	if !d.Allowed() {
		writeDeny(w, d.Status, &d, reqID)
		h.tel.duration(r.Context(), &d, read)
		return
	}
	fw := &forward{d: &d, reqID: reqID, assertion: up.assertion, egressToken: up.egressToken, scheme: cr.Scheme, authority: cr.Authority, trustedPeer: trustedPeer, read: read}
	out := r.WithContext(context.WithValue(r.Context(), forwardKey{}, fw))
	out.Body = io.NopCloser(bytes.NewReader(b.bytes))
	out.ContentLength = int64(len(b.bytes))
	if len(b.bytes) == 0 && r.ContentLength <= 0 {
		out.Body = http.NoBody
	}
	// The body goes out with a Content-Length and no trailers: trailer
	// fields were never verified (docs/SPEC-EXTENSIONS.md).
	out.TransferEncoding = nil
	out.Trailer = nil
	if out.Header.Get("Upgrade") != "" {
		// No protocol upgrades: after a 101 the reverse proxy would copy
		// raw bytes both ways, none of them bound by the proof. Without
		// the Upgrade header it forwards an ordinary request.
		out.Header = out.Header.Clone()
		out.Header.Del("Upgrade")
	}
	h.proxy.ServeHTTP(w, out)
}

// denyEarly refuses a request before the pipeline runs (the adapter's own
// rules, and verifier_overloaded), recording and counting it like a
// decision. rec carries the request id, method and path.
func (h *Handler) denyEarly(w http.ResponseWriter, r *http.Request, rec *Record, code reason.Code, detail reason.Detail, err error, check bool) {
	d := h.recordEarly(r.Context(), rec, code, detail, err)
	if !check || code == reason.VerifierOverloaded {
		// The body was not read: close the connection rather than let the
		// server wait to discard a body nobody will verify.
		w.Header().Set("Connection", "close")
	}
	if code == reason.VerifierOverloaded {
		w.Header().Set("Retry-After", "1")
	}
	if check {
		writeCheckDeny(w, &d, rec.RequestID)
		return
	}
	writeDeny(w, d.Status, &d, rec.RequestID)
}

// recordEarly records, counts and logs a refusal made before the pipeline
// runs (the adapters' own rules, verifier_overloaded, an untrusted
// gateway), and returns it: audit_unavailable when it could not be
// recorded. rec carries the request id, method and path.
func (h *Handler) recordEarly(ctx context.Context, rec *Record, code reason.Code, detail reason.Detail, err error) core.Decision {
	return h.recordRefusal(ctx, rec, core.Decision{Reason: code, Status: code.HTTPStatus(), Detail: detail, Err: err})
}

// recordRefusal is recordEarly for a refusal already built.
func (h *Handler) recordRefusal(ctx context.Context, rec *Record, d core.Decision) core.Decision {
	rec.Decision = &d
	if h.cfg.Record != nil {
		if rerr := h.cfg.Record(ctx, rec); rerr != nil {
			if d.Reason == reason.GatewayNotTrusted {
				// Already a denial; a peer outside --trusted-proxies
				// learns nothing of the node's audit state.
				h.log.Error("audit record failed", "request_id", rec.RequestID, "err", rerr)
			} else {
				h.log.Error("audit record failed; failing closed", "request_id", rec.RequestID, "err", rerr)
				d = auditFailed(d, rerr)
			}
		}
	}
	h.tel.count(ctx, &d)
	h.logDecision(ctx, &d, rec.RequestID, 0)
	return d
}

// endToEnd returns h without the headers its Connection header nominates.
// They are hop-by-hop (RFC 9110 §7.6.1) and the reverse proxy removes them,
// so the upstream never sees them: they must not count as covered headers,
// or a hop could strip a header the verifier checked. h is not changed, and
// is returned as is when Connection nominates nothing present.
func endToEnd(h http.Header) http.Header {
	var out http.Header
	for _, v := range h["Connection"] {
		for sf := range strings.SplitSeq(v, ",") {
			if sf = textproto.TrimString(sf); sf == "" {
				continue
			}
			if _, ok := h[textproto.CanonicalMIMEHeaderKey(sf)]; !ok {
				continue
			}
			if out == nil {
				out = h.Clone()
			}
			out.Del(sf)
		}
	}
	if out == nil {
		return h
	}
	return out
}

// isTrustPlaneName reports whether a header name is X-TrustPlane-*, in any
// case and with '_' for any '-': CGI-style upstreams (WSGI, Rack, PHP) read
// X_TrustPlane_Subject as X-TrustPlane-Subject, so the caller's underscore
// spelling could stand beside, or in for, ours.
func isTrustPlaneName(k string) bool {
	const prefix = "x-trustplane-"
	if len(k) < len(prefix) {
		return false
	}
	for i := range len(prefix) {
		c := k[i]
		switch {
		case c == '_':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// setContextHeaders adds exactly one value of each context header (SPEC
// §10.2).
func setContextHeaders(h http.Header, d *core.Decision) {
	h.Set("X-TrustPlane-Subject", d.Subject)
	h.Set("X-TrustPlane-Issuer", d.Issuer)
	h.Set("X-TrustPlane-Trust-Domain", d.TrustDomain)
	h.Set("X-TrustPlane-JTI", d.JTI)
	h.Set("X-TrustPlane-Route-Id", d.RouteID)
	h.Set("X-TrustPlane-Key-Binding", d.KeyBinding)
}

// setResponseRequestID puts the request id on the upstream's answer: every
// answer carries it (SPEC §9), and it replaces any the upstream set.
func setResponseRequestID(resp *http.Response) error {
	if fw, ok := resp.Request.Context().Value(forwardKey{}).(*forward); ok {
		resp.Header.Set("X-Request-Id", fw.reqID)
	}
	return nil
}

func (h *Handler) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if fw, ok := r.Context().Value(forwardKey{}).(*forward); ok {
		w.Header().Set("X-Request-Id", fw.reqID)
		h.log.Warn("upstream request failed", "request_id", fw.reqID, "err", err)
	}
	// The jti stays consumed (SPEC §7): the caller must sign a new request.
	writeJSON(w, http.StatusBadGateway, map[string]any{"error": "upstream_unavailable"})
}

// bufferPool reuses the response copy buffers of the reverse proxy. Without
// one, ReverseProxy allocates 32 KiB per response: under load that was more
// than half of every byte verifierd allocated, and its GC work
// (docs/PERFORMANCE.md, "Profile under load").
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (bp *bufferPool) Get() []byte  { return *bp.p.Get().(*[]byte) }
func (bp *bufferPool) Put(b []byte) { bp.p.Put(&b) }
