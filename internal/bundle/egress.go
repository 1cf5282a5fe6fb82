package bundle

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tpcluster/tpcluster/internal/signerclass"
)

// OAuth egress ([ours], docs/OAUTH-EGRESS.md): providers declared once at
// the top level of a policy bundle, named by the egress block of a route.
// The bundle says what to ask for and from whom; the secrets to ask with
// never travel in it.

// ClientAuth is how verifierd authenticates to a provider's token endpoint.
type ClientAuth string

// Client authentication methods (RFC 6749 §2.3.1, RFC 7523 §2.2).
const (
	ClientSecretBasic ClientAuth = "client_secret_basic"
	ClientSecretPost  ClientAuth = "client_secret_post"
	PrivateKeyJWT     ClientAuth = "private_key_jwt"
)

// UsesSecret reports whether the method needs a client secret (else a
// private key).
func (a ClientAuth) UsesSecret() bool { return a == ClientSecretBasic || a == ClientSecretPost }

// Grant is the OAuth grant of an egress route.
type Grant string

// Grants an egress route may use.
const (
	GrantClientCredentials Grant = "client_credentials"
	GrantTokenExchange     Grant = "urn:ietf:params:oauth:grant-type:token-exchange" // RFC 8693
)

// SubjectBackendAssertion is the one subject_token source of a token
// exchange: the request's backend assertion.
const SubjectBackendAssertion = "backend_assertion"

// MaxEgressTokenLifetime bounds max_token_lifetime_seconds: a provider
// token kept for longer than a day is a session, not a per-decision bridge.
const MaxEgressTokenLifetime = 24 * time.Hour

// EgressProvider is one egress_providers entry.
type EgressProvider struct {
	ID            string
	TokenEndpoint string // https, or http on a loopback host
	ClientID      string
	ClientAuth    ClientAuth
	// Issuer is the authorization server's issuer identifier, the client
	// assertion's aud when set (else TokenEndpoint). Empty if absent.
	Issuer string
	// IntrospectionEndpoint, if set, is the provider's RFC 7662 endpoint:
	// every token obtained is introspected before use. Empty if absent.
	IntrospectionEndpoint string
}

// Egress is a route's egress block.
type Egress struct {
	Provider *EgressProvider
	Grant    Grant
	// SubjectToken is SubjectBackendAssertion for a token exchange, empty
	// for client_credentials.
	SubjectToken string
	// Scope is the exact scope list, in document order, non-empty and
	// without duplicates.
	Scope    []string
	Audience string // empty if absent
	Resource string // empty if absent
	Tenant   string // empty if absent
	// Claims are the claim names to request; nil if absent.
	Claims           []string
	MaxTokenLifetime time.Duration
	// MinSignerClass is min_signer_class, zero if absent. The route's
	// RequiredKeyBinding already includes it.
	MinSignerClass signerclass.Class
}

// parseEgressProviders reads the optional top-level egress_providers.
func parseEgressProviders(doc object) (map[string]*EgressProvider, error) {
	list, ok, err := doc.objects("egress_providers")
	if err != nil || !ok {
		return nil, err
	}
	out := make(map[string]*EgressProvider, len(list))
	for _, o := range list {
		if err := o.only("provider_id", "token_endpoint", "client_id", "client_auth", "issuer", "introspection_endpoint"); err != nil {
			return nil, err
		}
		p := new(EgressProvider)
		if p.ID, err = o.required("provider_id"); err != nil {
			return nil, err
		}
		if out[p.ID] != nil {
			return nil, fmt.Errorf("%s: duplicate provider_id %q", o.at("provider_id"), p.ID)
		}
		if p.TokenEndpoint, err = o.required("token_endpoint"); err != nil {
			return nil, err
		}
		if err := checkTokenEndpoint(p.TokenEndpoint); err != nil {
			return nil, fmt.Errorf("%s: %w", o.at("token_endpoint"), err)
		}
		if p.ClientID, err = o.required("client_id"); err != nil {
			return nil, err
		}
		auth, err := o.required("client_auth")
		if err != nil {
			return nil, err
		}
		p.ClientAuth = ClientAuth(auth)
		switch p.ClientAuth {
		case ClientSecretBasic, ClientSecretPost, PrivateKeyJWT:
		default:
			return nil, fmt.Errorf("%s: unknown client authentication %q", o.at("client_auth"), auth)
		}
		if p.Issuer, _, err = o.text("issuer"); err != nil {
			return nil, err
		}
		if p.IntrospectionEndpoint, _, err = o.text("introspection_endpoint"); err != nil {
			return nil, err
		}
		if p.IntrospectionEndpoint != "" {
			if err := checkTokenEndpoint(p.IntrospectionEndpoint); err != nil {
				return nil, fmt.Errorf("%s: %w", o.at("introspection_endpoint"), err)
			}
		}
		out[p.ID] = p
	}
	return out, nil
}

// checkTokenEndpoint accepts an absolute https URL, or http on a loopback
// host: a client secret or a provider token must never cross a network in
// clear text.
func checkTokenEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.Host == "" || u.Hostname() == "" || u.Opaque != "" {
		return fmt.Errorf("%q is not an absolute URL with a host", s)
	}
	if u.User != nil || u.Fragment != "" || strings.Contains(s, "#") {
		return fmt.Errorf("%q has user info or a fragment", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if loopbackHost(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%q: http is allowed only on a loopback host; use https", s)
	}
	return fmt.Errorf("%q: the scheme must be https", s)
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsLoopback()
}

// parseEgress reads a route's egress block against the declared providers.
func parseEgress(o object, providers map[string]*EgressProvider) (*Egress, error) {
	if err := o.only("provider", "grant", "subject_token", "scope", "audience", "resource",
		"tenant", "claims", "max_token_lifetime_seconds", "min_signer_class"); err != nil {
		return nil, err
	}
	e := new(Egress)
	id, err := o.required("provider")
	if err != nil {
		return nil, err
	}
	if e.Provider = providers[id]; e.Provider == nil {
		return nil, fmt.Errorf("%s: no provider %q in egress_providers", o.at("provider"), id)
	}
	grant, err := o.required("grant")
	if err != nil {
		return nil, err
	}
	e.Grant = Grant(grant)
	if e.SubjectToken, _, err = o.text("subject_token"); err != nil {
		return nil, err
	}
	switch e.Grant {
	case GrantClientCredentials:
		if e.SubjectToken != "" {
			return nil, fmt.Errorf("%s: client_credentials takes no subject token", o.at("subject_token"))
		}
	case GrantTokenExchange:
		if e.SubjectToken == "" {
			return nil, missing(o, "subject_token")
		}
		if e.SubjectToken != SubjectBackendAssertion {
			return nil, fmt.Errorf("%s: unknown subject token %q (only %q)", o.at("subject_token"), e.SubjectToken, SubjectBackendAssertion)
		}
	default:
		return nil, fmt.Errorf("%s: unknown grant %q", o.at("grant"), grant)
	}
	scope, ok, err := o.strings("scope")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, missing(o, "scope")
	}
	if len(scope) == 0 {
		// No scope would ask the provider for its default: the widest
		// token it grants the client, never the narrowest.
		return nil, fmt.Errorf("%s: must not be empty", o.at("scope"))
	}
	for i, s := range scope {
		if !scopeToken(s) {
			return nil, fmt.Errorf("%s[%d]: %q is not a scope token (RFC 6749 §3.3)", o.at("scope"), i, s)
		}
		if slices.Contains(scope[:i], s) {
			return nil, fmt.Errorf("%s[%d]: duplicate scope %q", o.at("scope"), i, s)
		}
	}
	e.Scope = scope
	if e.Audience, _, err = o.text("audience"); err != nil {
		return nil, err
	}
	if e.Resource, _, err = o.text("resource"); err != nil {
		return nil, err
	}
	if e.Resource != "" {
		// RFC 8707 §2: an absolute URI without a fragment.
		if u, err := url.Parse(e.Resource); err != nil || !u.IsAbs() || u.Fragment != "" {
			return nil, fmt.Errorf("%s: %q is not an absolute URI without a fragment", o.at("resource"), e.Resource)
		}
	}
	if e.Tenant, _, err = o.text("tenant"); err != nil {
		return nil, err
	}
	claims, ok, err := o.strings("claims")
	if err != nil {
		return nil, err
	}
	if ok {
		for i, c := range claims {
			if c == "" || slices.Contains(claims[:i], c) {
				return nil, fmt.Errorf("%s[%d]: empty or duplicate claim name", o.at("claims"), i)
			}
		}
		e.Claims = claims
	}
	n, ok, err := o.integer("max_token_lifetime_seconds")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, missing(o, "max_token_lifetime_seconds")
	}
	if n < 1 || time.Duration(n)*time.Second > MaxEgressTokenLifetime {
		return nil, fmt.Errorf("%s: %d is outside 1..%d", o.at("max_token_lifetime_seconds"), n, int(MaxEgressTokenLifetime/time.Second))
	}
	e.MaxTokenLifetime = time.Duration(n) * time.Second
	if e.MinSignerClass, _, err = keyBinding(o, "min_signer_class"); err != nil {
		return nil, err
	}
	return e, nil
}

// scopeToken reports whether s is an RFC 6749 §3.3 scope-token: printable
// ASCII without space, '"' or '\'.
func scopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
