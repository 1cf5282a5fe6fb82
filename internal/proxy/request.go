package proxy

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/google/uuid"
)

// splitTarget returns the raw path and raw query of a request target exactly
// as sent: no decoding, no normalisation (SPEC §3.2, §4). An absolute-form
// target ("http://host/p?q") yields its path and query. A '#' cannot appear
// in a request target; net/http keeps it and what follows in the path or
// query it forwards, so it stays here too and is bound like any other byte.
func splitTarget(target string) (path, query string) {
	if !strings.HasPrefix(target, "/") {
		// Absolute form: scheme "://" authority, then the path. Cut after
		// the authority by position; searching for the host's text would
		// find it inside the scheme ("http://p/x" has a 'p' in "http").
		if _, rest, ok := strings.Cut(target, "://"); ok {
			if i := strings.IndexAny(rest, "/?"); i >= 0 {
				target = rest[i:]
			} else {
				target = ""
			}
		}
	}
	path, query, _ = strings.Cut(target, "?")
	return path, query
}

// upstreamTarget is the request target the upstream receives for an
// inbound target (rewrite): its path and query, a bare trailing '?' kept,
// an absolute form reduced to its origin form. The backend assertion names
// it, so an upstream compares it with its own RequestURI.
func upstreamTarget(target string) string {
	path, query := splitTarget(target)
	if query != "" || strings.Contains(target, "?") {
		return path + "?" + query
	}
	return path
}

// peerAddr returns the address of the connection's peer.
func peerAddr(r *http.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

func trusted(prefixes []netip.Prefix, r *http.Request) bool {
	a, ok := peerAddr(r)
	return ok && trustedAddr(prefixes, a)
}

// trustedAddr reports whether the peer address a (unmapped) is inside one
// of prefixes: the one trust rule of check mode and the gRPC gateway.
func trustedAddr(prefixes []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// requestID returns the inbound X-Request-Id when it is 1 to 128 characters
// of [A-Za-z0-9._-], else a new UUIDv7 (SPEC §9).
func requestID(r *http.Request) string {
	if v := r.Header.Get("X-Request-Id"); validRequestID(v) {
		return v
	}
	return newRequestID()
}

func validRequestID(v string) bool {
	if len(v) == 0 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// newRequestID returns a new UUIDv7 (RFC 9562): time-ordered, so request ids
// sort like the audit events that carry them.
func newRequestID() string {
	id, err := uuid.NewV7()
	if err != nil {
		// Only a failing system random source gets here; a v4 id still
		// identifies the request.
		return uuid.NewString()
	}
	return id.String()
}
