package proxy

import (
	"maps"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"time"

	"github.com/tpcluster/tpcluster/internal/core"
)

// forward carries the decision from serveProxy to rewrite. Request-scoped
// data only (STYLE §5).
type forward struct {
	d           *core.Decision
	reqID       string
	assertion   string    // the backend assertion, "" when the route asks for none
	egressToken string    // the provider token, "" when the route has no egress
	scheme      string    // the scheme the request was verified with
	authority   string    // the authority the request was verified with
	trustedPeer bool      // the peer is in --trusted-proxies
	read        time.Time // when the request had been read (tpcluster.decision.duration)
}

type forwardKey struct{}

// wireHeaders are the five headers of SPEC §3.5.
var wireHeaders = []string{
	"Authorization",
	"X-Trustplane-Nonce",
	"X-Trustplane-Body-Sha256",
	"X-Trustplane-Transcript-Sha256",
	"X-Trustplane-Proof",
}

// rewrite builds the upstream request: the same method, target and body as
// verified, every inbound X-TrustPlane-* removed, the forwarding headers
// ours, uncovered override headers dropped, the context headers added.
func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	fw, _ := pr.In.Context().Value(forwardKey{}).(*forward)
	if fw == nil {
		// Unreachable: serveProxy always sets it. Forward nothing.
		pr.Out.URL.Host = "invalid."
		return
	}
	u := h.cfg.Upstream
	pr.Out.URL.Scheme = u.Scheme
	pr.Out.URL.Host = u.Host
	// Keep the request target exactly as received (SPEC §10.2): the raw
	// path goes out as Opaque, so net/url never re-encodes it, and the raw
	// query replaces the one ReverseProxy cleaned (it re-encodes a query
	// holding ';'). CheckPath has refused "//" and '#', the two spellings
	// Opaque would read differently.
	target := pr.In.RequestURI
	path, query := splitTarget(target)
	if strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "//") {
		pr.Out.URL.Opaque = path
	}
	pr.Out.URL.RawQuery = query
	pr.Out.URL.ForceQuery = query == "" && strings.Contains(target, "?")
	pr.Out.Host = pr.In.Host
	pr.Out.Trailer = nil

	keep := map[string][]string{}
	// An egress route's upstream is the provider's side: the caller's
	// passport and proof never go there, whatever --forward-proof-headers
	// says (docs/OAUTH-EGRESS.md).
	if h.cfg.ForwardProofHeaders && fw.d.Egress == nil {
		for _, k := range wireHeaders {
			if v, ok := pr.In.Header[k]; ok {
				keep[k] = v
			}
		}
	}
	for k := range pr.Out.Header {
		if isTrustPlaneName(k) || forwardingHeader(foldName(k)) {
			delete(pr.Out.Header, k)
		}
	}
	pr.Out.Header.Del("Authorization")
	dropUncovered(pr.Out.Header, fw.d.CoveredHeaders, fw.d.KeepOverrideHeaders)
	maps.Copy(pr.Out.Header, keep)
	setForwarded(pr.Out.Header, pr.In, fw)
	setContextHeaders(pr.Out.Header, fw.d)
	switch {
	case fw.d.Egress != nil:
		// The provider token replaces the caller's Authorization (removed
		// above); the backend assertion was the exchange's subject token
		// and stays with the verifier.
		pr.Out.Header.Set("Authorization", "Bearer "+fw.egressToken)
	case fw.assertion != "":
		pr.Out.Header.Set("X-TrustPlane-Assertion", fw.assertion)
	}
	pr.Out.Header.Set("X-Request-Id", fw.reqID)
	// The reverse proxy hands the request to the transport next: the
	// decision's own time ends here.
	h.tel.duration(pr.In.Context(), fw.d, fw.read)
}

// setForwarded sets the forwarding headers no caller can cover (SPEC §3.4)
// from what the verifier knows: X-Forwarded-For is the peer, after the
// chain a trusted proxy passed; -Host and -Proto are the authority and
// scheme the request was verified with. Every other X-Forwarded-*,
// Forwarded and X-Real-IP was dropped.
func setForwarded(out http.Header, in *http.Request, fw *forward) {
	peer := ""
	if a, ok := peerAddr(in); ok {
		peer = a.String()
	}
	chain := peer
	if prior := in.Header.Values("X-Forwarded-For"); fw.trustedPeer && len(prior) > 0 {
		chain = strings.Join(append(slices.Clone(prior), peer), ", ")
	}
	if chain != "" {
		out.Set("X-Forwarded-For", chain)
	}
	out.Set("X-Forwarded-Host", fw.authority)
	out.Set("X-Forwarded-Proto", fw.scheme)
}
