package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/tpcluster/tpcluster/internal/reason"
)

// The rules here keep "what is verified is what is forwarded"
// (docs/SPEC-EXTENSIONS.md, HTTP): an upstream must never read a request
// differently from the one the proof binds.

// foldName returns a header name in lower case with '_' read as '-':
// CGI-style upstreams (WSGI, Rack, PHP) read X_Real_IP as X-Real-IP.
func foldName(k string) string {
	b := []byte(k)
	for i, c := range b {
		switch {
		case c == '_':
			b[i] = '-'
		case 'A' <= c && c <= 'Z':
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// canonicalMethod reports whether m is already in the form the transcript
// binds (SPEC §3.2: trimmed, ASCII upper case). Go's server accepts any
// token ("get", "Post"); the transcript would bind "GET" while the upstream
// read "get", so such spellings are denied rather than rewritten (check
// mode cannot rewrite what the gateway forwards).
func canonicalMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if 'a' <= c && c <= 'z' || c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// singleton reports whether a folded header name is one an upstream reads
// as a single value, so that two field lines of it could be read as either
// (the transcript binds the first value only, SPEC §3.4): every Content-*
// name, every name ending in "host", the override headers, and the
// conditional and range headers.
func singleton(folded string) bool {
	switch {
	case strings.HasPrefix(folded, "content-"), folded == "host", strings.HasSuffix(folded, "-host"):
		return true
	case overrideHeader(folded):
		return true
	}
	// Authorization is core's (passport_malformed, step 7).
	switch folded {
	case "range", "if-range", "if-modified-since", "if-unmodified-since",
		"origin", "referer", "expect", "max-forwards":
		return true
	}
	return false
}

// ambiguousHeader returns the first singleton header (folded) that appears
// in more than one field line of h, under any spelling, or "".
func ambiguousHeader(h http.Header) string {
	var seen map[string]int
	var found []string
	for k, vs := range h {
		f := foldName(k)
		if !singleton(f) {
			continue
		}
		if seen == nil {
			seen = map[string]int{}
		}
		seen[f] += len(vs)
		if seen[f] > 1 {
			found = append(found, f)
		}
	}
	if len(found) == 0 {
		return ""
	}
	slices.Sort(found) // map order must not pick the reported name
	return found[0]
}

// overrideNames change which method, path or target an upstream framework
// acts on (Symfony, Laravel, IIS URL Rewrite, Express method-override,
// Rails Rack::MethodOverride reads X-HTTP-Method-Override): unless the
// transcript covers them, a caller could sign one request and have another
// executed.
var overrideNames = []string{
	"x-http-method-override",
	"x-http-method",
	"x-method-override",
	"x-original-method",
	"x-original-url",
	"x-original-uri",
	"x-rewrite-url",
	"x-override-url",
	"x-http-destinationurl",
	"x-http-path-override",
}

func overrideHeader(folded string) bool {
	return slices.Contains(overrideNames, folded)
}

// forwardingHeader reports whether a folded name is one a proxy sets about
// the hop (client address, host, scheme, prefix): no caller can cover it
// (SPEC §3.4 step 1), so the verifier sets its own or drops it.
func forwardingHeader(folded string) bool {
	return strings.HasPrefix(folded, "x-forwarded-") || folded == "forwarded" || folded == "x-real-ip" ||
		folded == "x-client-ip" || folded == "true-client-ip" || folded == "x-cluster-client-ip"
}

// preCheck applies the adapter's rules that run before step 1, in both
// modes: a method spelled other than as the transcript binds it, and an
// ambiguous singleton header. It returns why the request is refused, with
// its detail code, or nil.
func preCheck(method string, h http.Header) (reason.Detail, error) {
	if !canonicalMethod(method) {
		return reason.DetailMethodSpelling, errors.New("method is not in canonical upper case")
	}
	if name := ambiguousHeader(h); name != "" {
		return reason.DetailHeaderRepeated, fmt.Errorf("header %s appears in more than one field line", name)
	}
	return "", nil
}

// mustBeCovered is check mode's core.Request.MustBeCovered: the gateway
// forwards headers as they are, so an override header it would pass on
// uncovered is denied instead of dropped.
func mustBeCovered(name string) bool { return overrideHeader(foldName(name)) }

// dropUncovered removes from out every override header the decision did not
// cover, unless the route keeps them (keep_override_headers). Covered names
// are compared as sent (lower case): an underscore spelling of a covered
// name is another header, and is dropped.
func dropUncovered(out http.Header, covered []string, keep bool) {
	if keep {
		return
	}
	for k := range out {
		if overrideHeader(foldName(k)) && !slices.Contains(covered, strings.ToLower(k)) {
			delete(out, k)
		}
	}
}

// gatewayForwardingNames are the X-Forwarded-* names a gateway in front of
// check mode sets or clears itself (the shipped nginx config does all of
// them; Traefik forwardAuth and Envoy set their own). Check mode denies any
// other X-Forwarded-* name: the gateway would pass the caller's value to
// the upstream, and frameworks read names like X-Forwarded-Scheme.
var gatewayForwardingNames = []string{
	"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port",
	"x-forwarded-prefix", "x-forwarded-ssl", "x-forwarded-server", "x-forwarded-uri",
	"x-forwarded-path", "x-forwarded-method", "x-forwarded-client-cert",
	"x-forwarded-tls-client-cert", "x-forwarded-tls-client-cert-info",
}

// foreignForwardingHeader reports whether h holds an X-Forwarded-* header
// (any spelling) that no gateway owns.
func foreignForwardingHeader(h http.Header) bool {
	for k := range h {
		if f := foldName(k); strings.HasPrefix(f, "x-forwarded-") &&
			(!slices.Contains(gatewayForwardingNames, f) || strings.ContainsRune(k, '_')) {
			return true
		}
	}
	return false
}
