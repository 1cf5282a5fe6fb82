// Package oauthtest starts a real OAuth 2 authorization server for tests:
// the OpenID Provider of github.com/zitadel/oidc/v3 (its op package, the
// token endpoint's client_credentials and RFC 8693 token exchange grants,
// client_secret_basic, client_secret_post and private_key_jwt client
// authentication), on 127.0.0.1, with in-memory clients.
//
// The protocol, client authentication, assertion checks and answers are
// the library's; what this package supplies is its storage (the clients,
// their keys, the tokens issued) and knobs a test turns: the lifetime it
// issues, a scope it adds unasked, an outage. It counts the token requests
// it receives and records their parameters, never a secret.
//
// Test support only: the layer table keeps it out of every binary.
package oauthtest

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Client is one registered OAuth client.
type Client struct {
	ID string
	// Secret is the client secret for client_secret_basic and
	// client_secret_post; empty for a private_key_jwt client.
	Secret string
	// PostOnly makes the client client_secret_post (else basic).
	PostOnly bool
	// Key is the public key of a private_key_jwt client, KID its key id.
	Key crypto.PublicKey
	KID string
	// Scopes are the scopes it may be granted.
	Scopes []string
}

// Config configures a Server.
type Config struct {
	Clients []Client
	// Lifetime is the access token lifetime it issues. If zero, 10 min.
	Lifetime time.Duration
	// VerifySubjectToken verifies a token exchange's subject token and
	// returns its subject. If nil, token exchange refuses every subject.
	VerifySubjectToken func(ctx context.Context, token string) (subject string, err error)
}

// Request is what the server recorded of one token request.
type Request struct {
	GrantType        string
	ClientAuth       string // client_secret_basic, client_secret_post or private_key_jwt
	ClientID         string
	Scope            string
	Audience         string
	Resource         string
	Tenant           string
	Claims           string
	SubjectTokenType string
	HasSubjectToken  bool
	// AssertionAudience is the client assertion's aud (private_key_jwt).
	AssertionAudience []string
}

// Server is a running authorization server.
type Server struct {
	// Issuer is the issuer identifier (http://127.0.0.1:PORT).
	Issuer string
	// TokenEndpoint is the token endpoint's URL.
	TokenEndpoint string
	// IntrospectionEndpoint is the RFC 7662 endpoint's URL.
	IntrospectionEndpoint string

	t       testing.TB
	cfg     Config
	handler http.Handler
	addr    string

	mu       sync.Mutex
	srv      *http.Server // nil while stopped; guarded by mu
	requests []Request    // guarded by mu
	lifetime time.Duration
	widen    string
	delay    time.Duration
	seq      int
	issued   map[string]issued // by token id
	inactive bool              // introspection says every token is inactive
	introAdd string            // a scope introspection adds
	intros   int               // introspection requests received
}

// issued is what the server remembers of a token, for introspection.
type issued struct {
	clientID string
	scopes   []string
	exp      time.Time
}

// Start starts a server on a free loopback port and stops it on cleanup.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Lifetime == 0 {
		cfg.Lifetime = 10 * time.Minute
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, cfg: cfg, addr: ln.Addr().String(), lifetime: cfg.Lifetime}
	s.Issuer = "http://" + s.addr
	s.TokenEndpoint = s.Issuer + "/oauth/token"
	s.IntrospectionEndpoint = s.Issuer + "/oauth/introspect"
	s.issued = make(map[string]issued)
	st := &storage{s: s, clients: make(map[string]*client)}
	for _, c := range cfg.Clients {
		st.clients[c.ID] = &client{Client: c}
	}
	var key [32]byte
	copy(key[:], "oauthtest-opaque-token-crypto-k!")
	provider, err := op.NewProvider(&op.Config{CryptoKey: key, AuthMethodPost: true, AuthMethodPrivateKeyJWT: true},
		st, op.StaticIssuer(s.Issuer), op.WithAllowInsecure(), op.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	srv := &server{LegacyServer: op.NewLegacyServer(provider, *op.DefaultEndpoints), provider: provider}
	s.handler = s.record(op.RegisterLegacyServer(srv, http.NotFound, op.WithFallbackLogger(quiet)))
	s.serve(ln)
	t.Cleanup(s.Stop)
	return s
}

// server is the library's LegacyServer, which authenticates a
// client_credentials client by its secret only; a client_assertion goes
// to the library's own private_key_jwt check first.
type server struct {
	*op.LegacyServer
	provider *op.Provider
}

func (s *server) VerifyClient(ctx context.Context, r *op.Request[op.ClientCredentials]) (op.Client, error) {
	if r.Data.ClientAssertionType == oidc.ClientAssertionTypeJWTAssertion {
		return op.AuthorizePrivateJWTKey(ctx, r.Data.ClientAssertion, s.provider)
	}
	return s.LegacyServer.VerifyClient(ctx, r)
}

func (s *Server) serve(ln net.Listener) {
	hs := &http.Server{Handler: s.handler, ReadHeaderTimeout: 5 * time.Second}
	s.mu.Lock()
	s.srv = hs
	s.mu.Unlock()
	go func() { _ = hs.Serve(ln) }()
}

// Stop stops the server: connections are refused, as in an outage.
func (s *Server) Stop() {
	s.mu.Lock()
	hs := s.srv
	s.srv = nil
	s.mu.Unlock()
	if hs != nil {
		_ = hs.Close()
	}
}

// Restart serves again on the same address after Stop.
func (s *Server) Restart() {
	s.t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port may be in TIME_WAIT for a moment
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.serve(ln)
}

// SetLifetime changes the lifetime of the tokens issued from now on.
func (s *Server) SetLifetime(d time.Duration) { s.mu.Lock(); s.lifetime = d; s.mu.Unlock() }

// SetWiden makes the server grant scope in addition to those asked for
// ("" stops it).
func (s *Server) SetWiden(scope string) { s.mu.Lock(); s.widen = scope; s.mu.Unlock() }

// SetDelay makes every token request wait d before it is answered.
func (s *Server) SetDelay(d time.Duration) { s.mu.Lock(); s.delay = d; s.mu.Unlock() }

// SetIntrospection makes introspection say every token is inactive, or
// add scope to what it reports ("" for none).
func (s *Server) SetIntrospection(inactive bool, scope string) {
	s.mu.Lock()
	s.inactive, s.introAdd = inactive, scope
	s.mu.Unlock()
}

// Introspections is the number of introspection requests received.
func (s *Server) Introspections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.intros
}

// Requests returns the token requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Count is the number of token requests received so far.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// record notes each token request's parameters before the OP handles it.
func (s *Server) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/oauth/token" {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		rec := Request{
			GrantType: form.Get("grant_type"), ClientID: form.Get("client_id"), Scope: form.Get("scope"),
			Audience: form.Get("audience"), Resource: form.Get("resource"), Tenant: form.Get("tenant"),
			Claims: form.Get("claims"), SubjectTokenType: form.Get("subject_token_type"),
			HasSubjectToken: form.Get("subject_token") != "",
		}
		switch id, _, basic := r.BasicAuth(); {
		case basic:
			rec.ClientAuth, rec.ClientID = "client_secret_basic", id
		case form.Get("client_secret") != "":
			rec.ClientAuth = "client_secret_post"
		case form.Get("client_assertion") != "":
			rec.ClientAuth = "private_key_jwt"
			var claims struct {
				Aud oidc.Audience `json:"aud"`
			}
			if _, err := oidc.ParseToken(form.Get("client_assertion"), &claims); err == nil {
				rec.AssertionAudience = claims.Aud
			}
		}
		s.mu.Lock()
		s.requests = append(s.requests, rec)
		delay := s.delay
		s.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// grant returns the scopes to grant for a request: those asked for that
// the client may have, plus the widened one if set.
func (s *Server) grant(c *client, asked []string) ([]string, error) {
	for _, sc := range asked {
		if !slices.Contains(c.Scopes, sc) {
			return nil, oidc.ErrInvalidScope().WithDescription("scope %q not allowed", sc)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(asked)
	if s.widen != "" {
		out = append(out, s.widen)
	}
	return out, nil
}

// storage is the OP's storage: clients, keys and issued token ids.
type storage struct {
	op.Storage // the interactive flows this server does not serve: nil, never called
	s          *Server
	clients    map[string]*client
}

var (
	errNotFound = errors.New("oauthtest: not found")
	quiet       = slog.New(slog.DiscardHandler)
)

func (st *storage) Health(context.Context) error { return nil }

func (st *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if c, ok := st.clients[id]; ok {
		return c, nil
	}
	return nil, errNotFound
}

func (st *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := st.clients[id]
	if !ok || c.Secret == "" || c.Secret != secret {
		return oidc.ErrInvalidClient().WithDescription("invalid client secret")
	}
	return nil
}

func (st *storage) ClientCredentials(_ context.Context, id, secret string) (op.Client, error) {
	c, ok := st.clients[id]
	if !ok || c.Secret == "" || c.Secret != secret {
		return nil, oidc.ErrInvalidClient().WithDescription("invalid client credentials")
	}
	return c, nil
}

func (st *storage) ClientCredentialsTokenRequest(_ context.Context, id string, scopes []string) (op.TokenRequest, error) {
	granted, err := st.s.grant(st.clients[id], scopes)
	if err != nil {
		return nil, err
	}
	return &tokenRequest{subject: id, scopes: granted}, nil
}

func (st *storage) GetKeyByIDAndClientID(_ context.Context, kid, id string) (*jose.JSONWebKey, error) {
	c, ok := st.clients[id]
	if !ok || c.Key == nil || c.KID != kid {
		return nil, errNotFound
	}
	return &jose.JSONWebKey{Key: c.Key, KeyID: c.KID, Use: "sig"}, nil
}

func (st *storage) CreateAccessToken(_ context.Context, r op.TokenRequest) (string, time.Time, error) {
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	st.s.seq++
	id, exp := fmt.Sprintf("tok-%d", st.s.seq), time.Now().Add(st.s.lifetime)
	clientID := r.GetSubject() // a client_credentials token's subject is its client
	if x, ok := r.(op.TokenExchangeRequest); ok {
		clientID = x.GetClientID()
	}
	st.s.issued[id] = issued{clientID: clientID, scopes: slices.Clone(r.GetScopes()), exp: exp}
	return id, exp, nil
}

func (st *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, _ string) error {
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	st.s.intros++
	tok, ok := st.s.issued[tokenID]
	if !ok || st.s.inactive {
		return errNotFound // the OP answers active: false
	}
	resp.Scope = slices.Clone(tok.scopes)
	if st.s.introAdd != "" {
		resp.Scope = append(resp.Scope, st.s.introAdd)
	}
	resp.ClientID, resp.Subject, resp.Expiration = tok.clientID, subject, oidc.FromTime(tok.exp)
	return nil
}

func (st *storage) SigningKey(context.Context) (op.SigningKey, error) {
	return nil, errors.New("oauthtest: issues opaque tokens only")
}

func (st *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (st *storage) KeySet(context.Context) ([]op.Key, error) { return nil, nil }

// Token exchange (RFC 8693).

func (st *storage) VerifyExchangeSubjectToken(ctx context.Context, token string, tt oidc.TokenType) (string, string, map[string]any, error) {
	if tt != oidc.JWTTokenType || st.s.cfg.VerifySubjectToken == nil {
		return "", "", nil, errors.New("oauthtest: subject token type not accepted")
	}
	sub, err := st.s.cfg.VerifySubjectToken(ctx, token)
	if err != nil {
		return "", "", nil, err
	}
	return token, sub, nil, nil
}

func (st *storage) VerifyExchangeActorToken(context.Context, string, oidc.TokenType) (string, string, map[string]any, error) {
	return "", "", nil, errors.New("oauthtest: no actor tokens")
}

func (st *storage) ValidateTokenExchangeRequest(_ context.Context, r op.TokenExchangeRequest) error {
	if r.GetRequestedTokenType() == "" {
		r.SetRequestedTokenType(oidc.AccessTokenType)
	}
	if r.GetRequestedTokenType() != oidc.AccessTokenType {
		return oidc.ErrInvalidRequest().WithDescription("only access tokens")
	}
	granted, err := st.s.grant(st.clients[r.GetClientID()], r.GetScopes())
	if err != nil {
		return err
	}
	r.SetCurrentScopes(granted)
	return nil
}

func (st *storage) CreateTokenExchangeRequest(context.Context, op.TokenExchangeRequest) error {
	return nil
}

func (st *storage) GetPrivateClaimsFromTokenExchangeRequest(context.Context, op.TokenExchangeRequest) (map[string]any, error) {
	return nil, nil
}

func (st *storage) SetUserinfoFromTokenExchangeRequest(context.Context, *oidc.UserInfo, op.TokenExchangeRequest) error {
	return nil
}

// tokenRequest is a client_credentials token request.
type tokenRequest struct {
	subject string
	scopes  []string
}

func (r *tokenRequest) GetSubject() string    { return r.subject }
func (r *tokenRequest) GetAudience() []string { return nil }
func (r *tokenRequest) GetScopes() []string   { return r.scopes }

// client is a registered client as the OP sees it.
type client struct{ Client }

func (c *client) GetID() string                       { return c.ID }
func (c *client) RedirectURIs() []string              { return nil }
func (c *client) PostLogoutRedirectURIs() []string    { return nil }
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *client) AuthMethod() oidc.AuthMethod {
	switch {
	case c.Key != nil:
		return oidc.AuthMethodPrivateKeyJWT
	case c.PostOnly:
		return oidc.AuthMethodPost
	}
	return oidc.AuthMethodBasic
}
func (c *client) ResponseTypes() []oidc.ResponseType { return nil }
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeClientCredentials, oidc.GrantTypeTokenExchange}
}
func (c *client) LoginURL(string) string               { return "" }
func (c *client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration       { return time.Minute }
func (c *client) DevMode() bool                        { return false }
func (c *client) IsScopeAllowed(scope string) bool     { return slices.Contains(c.Scopes, scope) }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c *client) ClockSkew() time.Duration             { return 0 }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// Scopes joins scopes as a token request carries them.
func Scopes(s ...string) string { return strings.Join(s, " ") }
