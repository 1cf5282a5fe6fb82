package egress

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/tpcluster/tpcluster/internal/bundle"
)

// RFC 8693 and RFC 7523 identifiers.
const (
	tokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"
	tokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	clientAssertionType  = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// assertionLifetime is a client assertion's exp - iat: long enough for
	// clock skew, short enough that a captured one is soon worthless.
	assertionLifetime = 60 * time.Second
	// maxResponseBytes bounds a token endpoint's answer read here.
	maxResponseBytes = 64 << 10
)

// fetch asks the provider for a token and checks the answer against the
// route's limits.
func (c *Client) fetch(ctx context.Context, spec *bundle.Egress, cred Credential, subjectToken string) (Token, error) {
	params := url.Values{}
	if spec.Audience != "" {
		params.Set("audience", spec.Audience)
	}
	if spec.Resource != "" {
		params.Set("resource", spec.Resource)
	}
	if spec.Tenant != "" {
		params.Set("tenant", spec.Tenant)
	}
	if len(spec.Claims) > 0 {
		req := make(map[string]any, len(spec.Claims))
		for _, name := range spec.Claims {
			req[name] = nil
		}
		b, err := json.Marshal(map[string]any{"access_token": req})
		if err != nil {
			return Token{}, fmt.Errorf("claims parameter: %w", err)
		}
		params.Set("claims", string(b))
	}
	p := spec.Provider
	if p.ClientAuth == bundle.PrivateKeyJWT {
		a, err := c.clientAssertion(p, cred)
		if err != nil {
			return Token{}, err
		}
		params.Set("client_assertion_type", clientAssertionType)
		params.Set("client_assertion", a)
	}
	var (
		raw resp
		err error
	)
	switch spec.Grant {
	case bundle.GrantClientCredentials:
		raw, err = c.clientCredentials(ctx, spec, cred, params)
	case bundle.GrantTokenExchange:
		params.Set("grant_type", string(bundle.GrantTokenExchange))
		params.Set("subject_token", subjectToken)
		params.Set("subject_token_type", tokenTypeJWT)
		params.Set("requested_token_type", tokenTypeAccessToken)
		params.Set("scope", strings.Join(spec.Scope, " "))
		raw, err = c.exchange(ctx, p, cred, params)
	default:
		err = fmt.Errorf("unknown grant %q", spec.Grant)
	}
	if err != nil {
		return Token{}, err
	}
	t, err := check(spec, raw)
	if err != nil {
		return Token{}, err
	}
	if p.IntrospectionEndpoint != "" {
		if err := c.introspect(ctx, spec, cred, t); err != nil {
			return Token{}, err
		}
	}
	return t, nil
}

// resp is the part of a token response this package reads.
type resp struct {
	AccessToken     string
	TokenType       string
	IssuedTokenType string // token exchange only
	ExpiresIn       int64  // -1 when absent
	Scope           *string
}

// clientCredentials runs the grant through x/oauth2's clientcredentials,
// with the auth style mapped from the provider's client_auth.
func (c *Client) clientCredentials(ctx context.Context, spec *bundle.Egress, cred Credential, params url.Values) (resp, error) {
	p := spec.Provider
	cfg := &clientcredentials.Config{
		ClientID:       p.ClientID,
		TokenURL:       p.TokenEndpoint,
		Scopes:         spec.Scope,
		EndpointParams: params,
	}
	switch p.ClientAuth {
	case bundle.ClientSecretBasic:
		cfg.ClientSecret, cfg.AuthStyle = cred.secret, oauth2.AuthStyleInHeader
	case bundle.ClientSecretPost:
		cfg.ClientSecret, cfg.AuthStyle = cred.secret, oauth2.AuthStyleInParams
	case bundle.PrivateKeyJWT:
		// client_id in the form, no secret; the assertion is in params.
		cfg.AuthStyle = oauth2.AuthStyleInParams
	}
	t, err := cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, c.http))
	if err != nil {
		if re, ok := errors.AsType[*oauth2.RetrieveError](err); ok {
			// The provider's own words stay out: its error code says enough.
			return resp{}, fmt.Errorf("token endpoint answered %d (%s)", re.Response.StatusCode, printable(re.ErrorCode))
		}
		return resp{}, fmt.Errorf("token request: %w", err)
	}
	r := resp{AccessToken: t.AccessToken, TokenType: t.TokenType, ExpiresIn: -1}
	switch v := t.Extra("expires_in").(type) {
	case float64:
		r.ExpiresIn = int64(v)
		if float64(r.ExpiresIn) != v {
			return resp{}, errors.New("expires_in is not an integer")
		}
	case string: // a form-encoded answer
		if r.ExpiresIn, err = strconv.ParseInt(v, 10, 64); err != nil {
			return resp{}, errors.New("expires_in is not an integer")
		}
	case nil:
	default:
		return resp{}, errors.New("expires_in is not a number")
	}
	switch v := t.Extra("scope").(type) {
	case string:
		r.Scope = &v
	case nil:
	default:
		return resp{}, errors.New("scope is not a string")
	}
	return r, nil
}

// exchange posts an RFC 8693 token exchange: x/oauth2 has no such grant.
// Client authentication is the provider's, as for client credentials.
func (c *Client) exchange(ctx context.Context, p *bundle.EgressProvider, cred Credential, params url.Values) (resp, error) {
	status, body, err := c.postForm(ctx, p.TokenEndpoint, p, cred, params)
	if err != nil {
		return resp{}, fmt.Errorf("token %w", err)
	}
	var doc struct {
		AccessToken     string          `json:"access_token"`
		TokenType       string          `json:"token_type"`
		IssuedTokenType string          `json:"issued_token_type"`
		ExpiresIn       json.RawMessage `json:"expires_in"`
		Scope           *string         `json:"scope"`
		Error           string          `json:"error"`
	}
	if status < 200 || status > 299 {
		_ = json.Unmarshal(body, &doc)
		return resp{}, fmt.Errorf("token endpoint answered %d (%s)", status, printable(doc.Error))
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return resp{}, fmt.Errorf("token response is not JSON: %w", err)
	}
	r := resp{AccessToken: doc.AccessToken, TokenType: doc.TokenType, IssuedTokenType: doc.IssuedTokenType, ExpiresIn: -1, Scope: doc.Scope}
	if len(doc.ExpiresIn) > 0 {
		if r.ExpiresIn, err = strconv.ParseInt(string(doc.ExpiresIn), 10, 64); err != nil {
			return resp{}, errors.New("expires_in is not an integer")
		}
	}
	if r.IssuedTokenType != "" && r.IssuedTokenType != tokenTypeAccessToken {
		return resp{}, fmt.Errorf("issued_token_type is %q, not an access token", printable(r.IssuedTokenType))
	}
	return r, nil
}

// postForm posts params to endpoint with the provider's client
// authentication and returns the status and a JSON body of at most
// maxResponseBytes. A 2xx answer that is not JSON is an error.
func (c *Client) postForm(ctx context.Context, endpoint string, p *bundle.EgressProvider, cred Credential, params url.Values) (int, []byte, error) {
	switch p.ClientAuth {
	case bundle.ClientSecretPost:
		params.Set("client_id", p.ClientID)
		params.Set("client_secret", cred.secret)
	case bundle.PrivateKeyJWT:
		params.Set("client_id", p.ClientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(params.Encode()))
	if err != nil {
		return 0, nil, fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if p.ClientAuth == bundle.ClientSecretBasic {
		// RFC 6749 §2.3.1: both form-urlencoded before Basic encoding.
		req.SetBasicAuth(url.QueryEscape(p.ClientID), url.QueryEscape(cred.secret))
	}
	hr, err := c.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("request: %w", err)
	}
	defer hr.Body.Close()
	body, err := io.ReadAll(io.LimitReader(hr.Body, maxResponseBytes+1))
	if err != nil {
		return 0, nil, fmt.Errorf("response: %w", err)
	}
	if len(body) > maxResponseBytes {
		return 0, nil, fmt.Errorf("response larger than %d bytes", maxResponseBytes)
	}
	if hr.StatusCode >= 200 && hr.StatusCode <= 299 {
		if mt, _, _ := mime.ParseMediaType(hr.Header.Get("Content-Type")); mt != "application/json" {
			return 0, nil, fmt.Errorf("response has content type %q, not application/json", printable(mt))
		}
	}
	return hr.StatusCode, body, nil
}

// introspectionSkew is how far an introspected exp may lie past the
// maximum lifetime: the provider's clock and ours differ a little.
const introspectionSkew = 30 * time.Second

// introspect asks the provider's RFC 7662 introspection endpoint about a
// token just obtained and refuses one that is not active, was granted a
// scope not asked for, lives past the route's maximum, or belongs to
// another client.
func (c *Client) introspect(ctx context.Context, spec *bundle.Egress, cred Credential, t Token) error {
	p := spec.Provider
	params := url.Values{"token": {t.AccessToken}, "token_type_hint": {"access_token"}}
	if p.ClientAuth == bundle.PrivateKeyJWT {
		a, err := c.clientAssertion(p, cred)
		if err != nil {
			return err
		}
		params.Set("client_assertion_type", clientAssertionType)
		params.Set("client_assertion", a)
	}
	status, body, err := c.postForm(ctx, p.IntrospectionEndpoint, p, cred, params)
	if err != nil {
		return fmt.Errorf("introspection %w", err)
	}
	var doc struct {
		Active   bool    `json:"active"`
		Scope    *string `json:"scope"`
		Exp      *int64  `json:"exp"`
		ClientID string  `json:"client_id"`
		Error    string  `json:"error"`
	}
	if status < 200 || status > 299 {
		_ = json.Unmarshal(body, &doc)
		return fmt.Errorf("introspection endpoint answered %d (%s)", status, printable(doc.Error))
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return fmt.Errorf("introspection response is not JSON: %w", err)
	}
	if !doc.Active {
		return errors.New("the provider says the token it issued is not active")
	}
	if doc.Scope != nil {
		for _, s := range strings.Fields(*doc.Scope) {
			if !slices.Contains(spec.Scope, s) {
				return fmt.Errorf("introspection: the token's scope is wider than requested (%q was not asked for)", printable(s))
			}
		}
	}
	if doc.Exp != nil && time.Unix(*doc.Exp, 0).After(c.now().Add(spec.MaxTokenLifetime+introspectionSkew)) {
		return fmt.Errorf("introspection: the token expires after the route's max_token_lifetime_seconds %d", int64(spec.MaxTokenLifetime/time.Second))
	}
	if doc.ClientID != "" && doc.ClientID != p.ClientID {
		return errors.New("introspection: the token was issued to another client")
	}
	return nil
}

// check refuses an answer that is not a bearer token within the route's
// limits: a missing or over-long lifetime, a scope wider than requested.
func check(spec *bundle.Egress, r resp) (Token, error) {
	if r.AccessToken == "" {
		return Token{}, errors.New("the answer has no access_token")
	}
	if !strings.EqualFold(r.TokenType, "Bearer") {
		return Token{}, fmt.Errorf("token_type is %q, not Bearer", printable(r.TokenType))
	}
	if strings.ContainsAny(r.AccessToken, " \t\r\n") {
		return Token{}, errors.New("the access token holds white space or a line break")
	}
	switch {
	case r.ExpiresIn < 0:
		return Token{}, errors.New("the answer has no expires_in: the token's lifetime cannot be held to the maximum")
	case r.ExpiresIn == 0:
		return Token{}, errors.New("expires_in is 0")
	case time.Duration(r.ExpiresIn)*time.Second > spec.MaxTokenLifetime || r.ExpiresIn > int64(bundle.MaxEgressTokenLifetime/time.Second):
		return Token{}, fmt.Errorf("expires_in %d s exceeds the route's max_token_lifetime_seconds %d", r.ExpiresIn, int64(spec.MaxTokenLifetime/time.Second))
	}
	scope := spec.Scope
	if r.Scope != nil {
		// RFC 6749 §5.1: an absent scope is the requested one; a present
		// one must not name anything that was not asked for.
		scope = strings.Fields(*r.Scope)
		for _, s := range scope {
			if !slices.Contains(spec.Scope, s) {
				return Token{}, fmt.Errorf("the granted scope is wider than requested (%q was not asked for)", printable(s))
			}
		}
	}
	return Token{
		AccessToken: r.AccessToken,
		Lifetime:    time.Duration(r.ExpiresIn) * time.Second,
		SHA256:      tokenSHA256(r.AccessToken),
		Scope:       scope,
	}, nil
}

// clientAssertion is a fresh RFC 7523 client assertion: iss = sub =
// client_id, aud = the issuer when declared (draft-ietf-oauth-rfc7523bis),
// else the token endpoint; a short exp and a unique jti.
func (c *Client) clientAssertion(p *bundle.EgressProvider, cred Credential) (string, error) {
	k := cred.key
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.kid))
	if err != nil {
		return "", fmt.Errorf("client assertion signer: %w", err)
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return "", fmt.Errorf("client assertion jti: %w", err)
	}
	aud := p.TokenEndpoint
	if p.Issuer != "" {
		aud = p.Issuer
	}
	now := c.now()
	claims := jwt.Claims{
		Issuer:    p.ClientID,
		Subject:   p.ClientID,
		Audience:  jwt.Audience{aud},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		Expiry:    jwt.NewNumericDate(now.Add(assertionLifetime)),
		ID:        base64.RawURLEncoding.EncodeToString(id),
	}
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("client assertion: %w", err)
	}
	return s, nil
}

// printable bounds and cleans text from a provider before it goes into an
// error: at most 64 bytes of printable ASCII.
func printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 64; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			b.WriteByte(c)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}
