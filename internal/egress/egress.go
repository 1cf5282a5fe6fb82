// Package egress obtains the provider OAuth token for one allowed request
// of a route with an egress block (the oauth_compat_egress tier,
// docs/OAUTH-EGRESS.md): client credentials or RFC 8693 token exchange,
// with client_secret_basic, client_secret_post or private_key_jwt, cached
// per (provider, route, tenant, subject, scope set) for less than the
// token's lifetime, one token request per key at a time.
//
// It starts only from a verified allow: its caller, internal/proxy, asks
// after the ledger consume. It never reads a caller's credential.
package egress

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sync/singleflight"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/signerclass"
)

// Defaults of Config.
const (
	DefaultTimeout    = 5 * time.Second
	DefaultMaxEntries = 10000
	// minMargin is the least time before a token's expiry at which the
	// cache stops serving it: the upstream must receive it still valid.
	minMargin = 5 * time.Second
)

// Config configures a Client.
type Config struct {
	// Credentials are the node's secrets and keys by provider id
	// (--egress-secret, --egress-key). A provider without one cannot be
	// used: Check refuses it.
	Credentials map[string]Credential
	// HTTPClient reaches the token endpoints. If nil, a client with dial
	// and header timeouts that follows no redirect (a redirect could carry
	// a client secret elsewhere) and uses the environment's HTTPS proxy.
	HTTPClient *http.Client
	// Timeout bounds one token request (--egress-timeout). If zero,
	// DefaultTimeout.
	Timeout time.Duration
	// MaxEntries bounds the cache. If zero, DefaultMaxEntries.
	MaxEntries int
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
	// MeterProvider receives the token request and cache metrics; nil
	// means no-op.
	MeterProvider metric.MeterProvider
}

// Client obtains provider tokens. It is safe for concurrent use.
type Client struct {
	creds   map[string]Credential
	http    *http.Client
	timeout time.Duration
	max     int
	now     func() time.Time
	group   singleflight.Group
	metrics *metrics

	mu    sync.Mutex
	cache map[string]cached // guarded by mu
}

type cached struct {
	tok    Token
	useBy  time.Time // served from the cache until then
	expiry time.Time
}

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.Timeout < 0 || cfg.MaxEntries < 0 {
		return nil, errors.New("egress: negative timeout or cache size")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = defaultHTTPClient()
	}
	for id := range cfg.Credentials {
		if id == "" {
			return nil, errors.New("egress: a credential for an empty provider id")
		}
	}
	m, err := newMetrics(cfg.MeterProvider, cfg.Credentials)
	if err != nil {
		return nil, fmt.Errorf("egress: metrics: %w", err)
	}
	return &Client{creds: cfg.Credentials, http: cfg.HTTPClient, timeout: cfg.Timeout, max: cfg.MaxEntries,
		now: cfg.Now, cache: make(map[string]cached), metrics: m}, nil
}

func defaultHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 10 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   16,
			ForceAttemptHTTP2:     true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Check reports whether the node holds a credential that suits p: the
// bundle.Options.EgressCheck of verifierd, so a policy naming a provider
// the node cannot authenticate to is refused before any request meets it.
func (c *Client) Check(p *bundle.EgressProvider) error {
	cred, ok := c.creds[p.ID]
	if !ok {
		return fmt.Errorf("this node has no credential for it (--egress-secret or --egress-key %s=FILE)", p.ID)
	}
	return cred.suits(p.ClientAuth)
}

// Request is one allowed request's need for a token.
type Request struct {
	Spec    *bundle.Egress // the route's egress block
	RouteID string
	// Subject is the passport's subject: tokens are never shared across
	// subjects, even for client_credentials.
	Subject string
	// KeyBinding is the decision's effective signer class.
	KeyBinding string
	// SubjectToken is the backend assertion, for a token exchange.
	SubjectToken string
}

// Token is a provider token for one request. AccessToken must never be
// logged or audited: SHA256 is for that.
type Token struct {
	AccessToken string
	// Lifetime is the expires_in the provider gave.
	Lifetime  time.Duration
	FromCache bool
	SHA256    string // lowercase hex SHA-256 of AccessToken
	Scope     []string
}

// String never shows the token.
func (t Token) String() string { return "egress token sha256:" + t.SHA256 }

// Error is a failed token request; the request is denied
// egress_token_unavailable.
type Error struct {
	Provider string
	Err      error
}

func (e *Error) Error() string { return "egress: provider " + e.Provider + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Token returns the token for r: from the cache while it has more than its
// margin to live, else from one token request shared by every concurrent
// caller with the same key. Every error is an *Error.
func (c *Client) Token(ctx context.Context, r *Request) (Token, error) {
	spec := r.Spec
	if spec == nil || spec.Provider == nil {
		return Token{}, &Error{Provider: "?", Err: errors.New("no egress block")}
	}
	fail := func(err error) (Token, error) { return Token{}, &Error{Provider: spec.Provider.ID, Err: err} }
	if spec.MinSignerClass != 0 {
		// The route's minimum already includes it (bundle); checked again
		// so a token is never obtained for a weaker signer.
		if kb, ok := signerclass.Parse(r.KeyBinding); !ok || !kb.Satisfies(spec.MinSignerClass) {
			return fail(fmt.Errorf("the effective signer class %q is below the egress minimum %s", r.KeyBinding, spec.MinSignerClass))
		}
	}
	if spec.Grant == bundle.GrantTokenExchange && r.SubjectToken == "" {
		return fail(errors.New("token exchange without a subject token (no backend assertion)"))
	}
	cred, ok := c.creds[spec.Provider.ID]
	if !ok {
		return fail(errors.New("no credential for the provider"))
	}
	if err := cred.suits(spec.Provider.ClientAuth); err != nil {
		return fail(err)
	}
	key := cacheKey(spec, r)
	if t, ok := c.lookup(key); ok {
		c.metrics.hit(spec.Provider.ID)
		return t, nil
	}
	// One token request per key; it runs under its own timeout, detached
	// from the first caller, so that caller going away fails nobody else.
	// Each caller waits for it only as long as its own context lasts.
	ch := c.group.DoChan(key, func() (any, error) {
		if t, ok := c.lookup(key); ok {
			return t, nil
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		start := time.Now()
		t, err := c.fetch(fctx, spec, cred, r.SubjectToken)
		c.metrics.request(fctx, spec.Provider.ID, time.Since(start), err)
		if err != nil {
			return nil, err
		}
		c.store(key, t)
		return t, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return fail(res.Err)
		}
		return res.Val.(Token), nil
	case <-ctx.Done():
		return fail(fmt.Errorf("waiting for the token: %w", context.Cause(ctx)))
	}
}

// margin is how long before its expiry a token stops being served from
// the cache: a tenth of its lifetime, at least minMargin.
func margin(lifetime time.Duration) time.Duration { return max(lifetime/10, minMargin) }

func (c *Client) lookup(key string) (Token, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.cache[key]
	if !ok {
		return Token{}, false
	}
	if !c.now().Before(e.useBy) {
		delete(c.cache, key)
		return Token{}, false
	}
	t := e.tok
	t.FromCache = true
	return t, true
}

// store caches t until its lifetime minus the margin, counted from now (a
// little after the provider issued it, so the real expiry is a little
// earlier than the computed one: the margin covers that). A token that
// would not outlive its margin is not cached.
func (c *Client) store(key string, t Token) {
	now := c.now()
	useBy := now.Add(t.Lifetime - margin(t.Lifetime))
	if !now.Before(useBy) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cache) >= c.max {
		c.evictLocked(now)
	}
	c.cache[key] = cached{tok: t, useBy: useBy, expiry: now.Add(t.Lifetime)}
}

// evictLocked drops the entries past their use-by time, and, if the cache
// is still full, any one entry (map order): a full cache costs a token
// request, never a stale token.
func (c *Client) evictLocked(now time.Time) {
	for k, e := range c.cache {
		if !now.Before(e.useBy) {
			delete(c.cache, k)
		}
	}
	for k := range c.cache {
		if len(c.cache) < c.max {
			break
		}
		delete(c.cache, k)
	}
}

// cacheKey is the cache and single-flight key: everything that makes two
// token requests differ. Fields are length-prefixed, so no value can
// stand in for two.
func cacheKey(spec *bundle.Egress, r *Request) string {
	scope := slices.Clone(spec.Scope)
	slices.Sort(scope)
	claims := slices.Clone(spec.Claims)
	slices.Sort(claims)
	p := spec.Provider
	var b strings.Builder
	for _, f := range []string{
		p.ID, p.TokenEndpoint, p.ClientID, string(p.ClientAuth), p.Issuer,
		r.RouteID, spec.Tenant, r.Subject, strings.Join(scope, " "),
		string(spec.Grant), spec.Audience, spec.Resource, strings.Join(claims, " "),
		spec.MaxTokenLifetime.String(),
	} {
		fmt.Fprintf(&b, "%d:%s|", len(f), f)
	}
	return b.String()
}

func tokenSHA256(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}
