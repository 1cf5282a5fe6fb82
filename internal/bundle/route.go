package bundle

import (
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/tpcluster/tpcluster/internal/signerclass"
)

// Route is one route of a policy bundle (SPEC §5.1, §5.3), with every
// default already applied.
type Route struct {
	ID           string
	Method       string // upper case, matched exactly
	PathTemplate string
	// Audience is the route's own audience, else its API's.
	Audience string
	// RequiredKeyBinding is the route's own, else the bundle default.
	RequiredKeyBinding signerclass.Class
	// Freshness is FreshnessUnknown for a class name we do not know;
	// FreshnessName keeps the name as written, for reports.
	Freshness     Freshness
	FreshnessName string
	// MaxStaleness is the route's max_staleness_seconds, else the bundle
	// default; zero when neither is given.
	MaxStaleness time.Duration
	Sources      []Source
	// SignedHeaders are the route's signed_headers, lower case (SPEC §3.4).
	SignedHeaders SignedHeaders
	// BodyHashFromGateway trusts the gateway's body hash in check mode (§4).
	BodyHashFromGateway bool
	// KeepOverrideHeaders forwards X-HTTP-Method-Override, X-Original-URL
	// and the like even when the transcript does not cover them; by default
	// proxy mode drops them (docs/SPEC-EXTENSIONS.md).
	KeepOverrideHeaders bool
	Risk                string // informational

	// QueryStrict is query_strict [ours, docs/SPEC-EXTENSIONS.md]: the
	// route refuses queries that common frameworks read in different ways.
	// Default false.
	QueryStrict bool

	// BackendAssertion, if not nil, asks verifierd to mint a backend
	// assertion for every allowed request of this route (backend_assertion
	// [ours], docs/BACKEND-JWT.md).
	BackendAssertion *BackendAssertion

	// Egress, if not nil, bridges every allowed request of this route to
	// a provider's OAuth token (egress [ours], docs/OAUTH-EGRESS.md).
	Egress *Egress

	tmpl template
}

// MaxAssertionTTL bounds backend_assertion.ttl_seconds: an assertion is a
// per-request artifact, not a session (docs/BACKEND-JWT.md).
const MaxAssertionTTL = 60 * time.Second

// BackendAssertion is a route's backend_assertion.
type BackendAssertion struct {
	// Audience is the backend's audience, the assertion's aud: never the
	// caller's passport audience.
	Audience string
	// TTL is the assertion's lifetime, 1 s to MaxAssertionTTL.
	TTL time.Duration
}

// Source is one allowed source of a route (SPEC §5.1). Exactly one of
// SubjectExact and SubjectPrefix is set.
type Source struct {
	Type          string // software_jwks, oidc_jwks or spiffe_spire
	Issuer        string
	TrustDomain   string
	SubjectExact  string
	SubjectPrefix string
	// RequiredKeyBinding is the source's own minimum; zero if absent. The
	// effective minimum is the higher of this and the route's.
	RequiredKeyBinding signerclass.Class
	Context            *ContextPolicy    // nil if absent
	Provenance         *ProvenancePolicy // nil if absent; the bundle's applies too
}

// ContextPolicy is a source's context_policy. Empty strings are absent.
type ContextPolicy struct {
	RequiredToolName   string
	RequiredWorkflowID string
	MaxTxnValue        *big.Rat // nil if absent
}

// ProvenancePolicy is a provenance_policy, bundle-level or per source. Empty
// strings are absent.
type ProvenancePolicy struct {
	Profile                   string
	RequiredSPIFFETrustDomain string
	RequiredPosture           string
}

// SignedHeaders is a route's signed_headers (SPEC §5.3): names the caller
// must cover, and names never considered covered.
type SignedHeaders struct {
	Required []string
	Ignore   []string
}

// Source types of SPEC §5.1.
var sourceTypes = []string{"software_jwks", "oidc_jwks", "spiffe_spire"}

// neverCovered are the header names SPEC §3.4 step 1 never treats as
// covered; requiring one would deny every request of the route.
var neverCovered = []string{
	"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te",
	"trailer", "upgrade", "proxy-authorization", "proxy-connection", "authorization",
	"x-trustplane-body-sha256", "x-trustplane-transcript-sha256", "x-trustplane-proof",
	"forwarded", "x-real-ip", "via",
}

// routeDefaults are the bundle-level values a route inherits.
type routeDefaults struct {
	keyBinding   signerclass.Class
	freshness    string
	maxStaleness time.Duration
	audience     string // of the route group's API
	providers    map[string]*EgressProvider
}

func parseRoute(o object, d routeDefaults) (*Route, error) {
	if err := o.only("route_id", "method", "path_template", "allowed_sources", "risk",
		"required_key_binding", "freshness_class", "max_staleness_seconds", "audience",
		"signed_headers", "body_hash_from_gateway", "query_strict", "keep_override_headers",
		"backend_assertion", "egress"); err != nil {
		return nil, err
	}
	r := &Route{Audience: d.audience, RequiredKeyBinding: d.keyBinding, FreshnessName: d.freshness}
	var err error
	if r.ID, err = o.required("route_id"); err != nil {
		return nil, err
	}
	if r.Method, err = o.required("method"); err != nil {
		return nil, err
	}
	if !validMethod(r.Method) {
		return nil, fmt.Errorf("%s: %q is not an upper-case HTTP method token", o.at("method"), r.Method)
	}
	if r.PathTemplate, err = o.required("path_template"); err != nil {
		return nil, err
	}
	if r.tmpl, err = compileTemplate(r.PathTemplate); err != nil {
		return nil, fmt.Errorf("%s: %w", o.at("path_template"), err)
	}
	if aud, ok, err := o.text("audience"); err != nil {
		return nil, err
	} else if ok {
		r.Audience = aud
	}
	if r.Risk, _, err = o.str("risk"); err != nil {
		return nil, err
	}
	if kb, ok, err := keyBinding(o, "required_key_binding"); err != nil {
		return nil, err
	} else if ok {
		r.RequiredKeyBinding = kb
	}
	if name, ok, err := o.str("freshness_class"); err != nil {
		return nil, err
	} else if ok {
		r.FreshnessName = name
	}
	// An unknown class loads; the route alone is denied (SPEC §8.3).
	r.Freshness = ParseFreshness(r.FreshnessName)
	r.MaxStaleness = d.maxStaleness
	if ms, ok, err := staleness(o, "max_staleness_seconds"); err != nil {
		return nil, err
	} else if ok {
		r.MaxStaleness = ms
	}
	if sh, ok, err := o.obj("signed_headers"); err != nil {
		return nil, err
	} else if ok {
		if r.SignedHeaders, err = parseSignedHeaders(sh); err != nil {
			return nil, err
		}
	}
	if r.BodyHashFromGateway, _, err = o.boolean("body_hash_from_gateway"); err != nil {
		return nil, err
	}
	if r.QueryStrict, _, err = o.boolean("query_strict"); err != nil {
		return nil, err
	}
	if r.KeepOverrideHeaders, _, err = o.boolean("keep_override_headers"); err != nil {
		return nil, err
	}
	if ba, ok, err := o.obj("backend_assertion"); err != nil {
		return nil, err
	} else if ok {
		if r.BackendAssertion, err = parseBackendAssertion(ba); err != nil {
			return nil, err
		}
	}
	if eo, ok, err := o.obj("egress"); err != nil {
		return nil, err
	} else if ok {
		if r.Egress, err = parseEgress(eo, d.providers); err != nil {
			return nil, err
		}
		if r.Egress.SubjectToken == SubjectBackendAssertion && r.BackendAssertion == nil {
			return nil, fmt.Errorf("%s: the subject token is the backend assertion and the route has no backend_assertion", eo.at("subject_token"))
		}
		// The egress minimum is a minimum of the route: the pipeline
		// refuses a weaker signer before the consume, with its own code.
		if r.Egress.MinSignerClass != 0 && !r.RequiredKeyBinding.Satisfies(r.Egress.MinSignerClass) {
			r.RequiredKeyBinding = r.Egress.MinSignerClass
		}
	}
	srcs, ok, err := o.objects("allowed_sources")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, missing(o, "allowed_sources")
	}
	if len(srcs) == 0 {
		// A route nobody may call is a mistake, not a policy.
		return nil, fmt.Errorf("%s: must not be empty", o.at("allowed_sources"))
	}
	for _, so := range srcs {
		s, err := parseSource(so)
		if err != nil {
			return nil, err
		}
		r.Sources = append(r.Sources, s)
	}
	return r, nil
}

func parseSource(o object) (Source, error) {
	var s Source
	if err := o.only("source_type", "issuer", "trust_domain", "subject_exact", "subject_prefix",
		"required_key_binding", "context_policy", "provenance_policy"); err != nil {
		return s, err
	}
	var err error
	if s.Type, err = o.required("source_type"); err != nil {
		return s, err
	}
	if !slices.Contains(sourceTypes, s.Type) {
		return s, fmt.Errorf("%s: unknown source type %q", o.at("source_type"), s.Type)
	}
	if s.Issuer, err = o.required("issuer"); err != nil {
		return s, err
	}
	if s.TrustDomain, err = o.required("trust_domain"); err != nil {
		return s, err
	}
	exact, hasExact, err := o.text("subject_exact")
	if err != nil {
		return s, err
	}
	prefix, hasPrefix, err := o.text("subject_prefix")
	if err != nil {
		return s, err
	}
	switch {
	case hasExact && hasPrefix:
		return s, fmt.Errorf("%s: both subject_exact and subject_prefix", o.path)
	case !hasExact && !hasPrefix:
		return s, fmt.Errorf("%s: neither subject_exact nor subject_prefix", o.path)
	}
	s.SubjectExact, s.SubjectPrefix = exact, prefix
	if s.RequiredKeyBinding, _, err = keyBinding(o, "required_key_binding"); err != nil {
		return s, err
	}
	if c, ok, err := o.obj("context_policy"); err != nil {
		return s, err
	} else if ok {
		if s.Context, err = parseContextPolicy(c); err != nil {
			return s, err
		}
	}
	if p, ok, err := o.obj("provenance_policy"); err != nil {
		return s, err
	} else if ok {
		if s.Provenance, err = parseProvenancePolicy(p); err != nil {
			return s, err
		}
	}
	return s, nil
}

func parseContextPolicy(o object) (*ContextPolicy, error) {
	if err := o.only("required_tool_name", "required_workflow_id", "max_txn_value"); err != nil {
		return nil, err
	}
	c := new(ContextPolicy)
	var err error
	if c.RequiredToolName, _, err = o.text("required_tool_name"); err != nil {
		return nil, err
	}
	if c.RequiredWorkflowID, _, err = o.text("required_workflow_id"); err != nil {
		return nil, err
	}
	if v, ok := o.m["max_txn_value"]; ok {
		if c.MaxTxnValue, err = decimalValue(v, o.at("max_txn_value")); err != nil {
			return nil, err
		}
		if c.MaxTxnValue.Sign() < 0 {
			return nil, fmt.Errorf("%s: must not be negative", o.at("max_txn_value"))
		}
	}
	return c, nil
}

func parseProvenancePolicy(o object) (*ProvenancePolicy, error) {
	if err := o.only("profile", "required_spiffe_trust_domain", "required_posture"); err != nil {
		return nil, err
	}
	p := new(ProvenancePolicy)
	var err error
	if p.Profile, _, err = o.text("profile"); err != nil {
		return nil, err
	}
	if p.RequiredSPIFFETrustDomain, _, err = o.text("required_spiffe_trust_domain"); err != nil {
		return nil, err
	}
	if p.RequiredPosture, _, err = o.text("required_posture"); err != nil {
		return nil, err
	}
	return p, nil
}

func parseSignedHeaders(o object) (SignedHeaders, error) {
	var sh SignedHeaders
	if err := o.only("required", "ignore"); err != nil {
		return sh, err
	}
	for _, field := range []struct {
		name string
		dst  *[]string
	}{{"required", &sh.Required}, {"ignore", &sh.Ignore}} {
		names, _, err := o.strings(field.name)
		if err != nil {
			return sh, err
		}
		for i, n := range names {
			p := fmt.Sprintf("%s[%d]", o.at(field.name), i)
			n = strings.ToLower(strings.Trim(n, " \t"))
			if !isToken(n) {
				return sh, fmt.Errorf("%s: %q is not a header name", p, n)
			}
			if slices.Contains(*field.dst, n) {
				return sh, fmt.Errorf("%s: duplicate header %q", p, n)
			}
			if field.name == "required" && (slices.Contains(neverCovered, n) || strings.HasPrefix(n, "x-forwarded-")) {
				return sh, fmt.Errorf("%s: %q is never a covered header (SPEC §3.4)", p, n)
			}
			if field.name == "ignore" && (n == "x-trustplane-nonce" || slices.Contains(sh.Required, n)) {
				return sh, fmt.Errorf("%s: %q is required and cannot be ignored", p, n)
			}
			*field.dst = append(*field.dst, n)
		}
	}
	return sh, nil
}

func keyBinding(o object, name string) (signerclass.Class, bool, error) {
	s, ok, err := o.str(name)
	if err != nil || !ok {
		return 0, ok, err
	}
	c, valid := signerclass.Parse(s)
	if !valid {
		return 0, false, fmt.Errorf("%s: unknown key binding %q", o.at(name), s)
	}
	return c, true, nil
}

// maxStalenessSeconds keeps a staleness within time.Duration (about 292
// years); anything larger is a typo.
const maxStalenessSeconds = 100 * 365 * 24 * 3600

// staleness reads a max_staleness_seconds. Zero and negative values load
// (SPEC §8.3: a bounded route without a positive max is stale at request
// time, it does not stop the bundle).
func staleness(o object, name string) (time.Duration, bool, error) {
	n, ok, err := o.integer(name)
	if err != nil || !ok {
		return 0, ok, err
	}
	if n > maxStalenessSeconds {
		return 0, false, fmt.Errorf("%s: more than 100 years", o.at(name))
	}
	if n < 0 {
		n = 0
	}
	return time.Duration(n) * time.Second, true, nil
}

// validMethod accepts an RFC 9110 token without lower-case letters: the
// method is matched exactly and requests carry upper case (SPEC §5.1).
func validMethod(m string) bool {
	return isToken(m) && strings.ToUpper(m) == m
}

// isToken reports whether s is a non-empty RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// parseBackendAssertion reads {audience, ttl_seconds}. Both are required: a
// default audience would be a guess about which backend reads it.
func parseBackendAssertion(o object) (*BackendAssertion, error) {
	if err := o.only("audience", "ttl_seconds"); err != nil {
		return nil, err
	}
	aud, err := o.required("audience")
	if err != nil {
		return nil, err
	}
	n, ok, err := o.integer("ttl_seconds")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, missing(o, "ttl_seconds")
	}
	if n < 1 || time.Duration(n)*time.Second > MaxAssertionTTL {
		return nil, fmt.Errorf("%s: %d is outside 1..%d", o.at("ttl_seconds"), n, int(MaxAssertionTTL/time.Second))
	}
	return &BackendAssertion{Audience: aud, TTL: time.Duration(n) * time.Second}, nil
}
