package backendjwt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Errors a caller may branch on (errors.Is).
var (
	// ErrMissing: the request carries no assertion.
	ErrMissing = errors.New("backendjwt: no assertion")
	// ErrInvalid: the assertion does not verify or its claims do not fit.
	ErrInvalid = errors.New("backendjwt: invalid assertion")
	// ErrNoKeys: no JWKS within its max age could be had.
	ErrNoKeys = errors.New("backendjwt: no current key set")
)

// DefaultSkew is the clock skew allowed on exp and nbf.
const DefaultSkew = 5 * time.Second

// maxTokenBytes bounds an assertion; one is well under 2 KiB.
const maxTokenBytes = 8 << 10

// maxJWKSBytes bounds a JWKS response.
const maxJWKSBytes = 1 << 20

// Config configures a Verifier.
type Config struct {
	// JWKSURL is the fleet's JWKS, e.g. http://verifierd:8081/_tp/jwks.json.
	// Required.
	JWKSURL string
	// Issuer is the fleet's issuer name (verifierd --assertion-issuer).
	// Required: an assertion from another fleet is refused.
	Issuer string
	// Audience is this backend's audience (the route's
	// backend_assertion.audience). Required.
	Audience string
	// Skew is allowed on exp and nbf. If zero, DefaultSkew.
	Skew time.Duration
	// MaxAge is how long a fetched key set is used when the JWKS answer
	// names no Cache-Control max-age. If zero, 60 s.
	MaxAge time.Duration
	// Client fetches the JWKS. If nil, a client with a 5 s timeout.
	Client *http.Client
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
}

// Verifier verifies assertions against a cached JWKS. It is safe for
// concurrent use.
type Verifier struct {
	cfg Config

	mu      sync.Mutex          // serialises fetches and guards the fields below
	keys    *jose.JSONWebKeySet // guarded by mu; the last good set
	fetched time.Time           // guarded by mu; when keys was fetched
	maxAge  time.Duration       // guarded by mu; keys' max age
	tried   time.Time           // guarded by mu; the last fetch attempt
}

// New checks cfg and returns a Verifier. It fetches nothing until the first
// verification.
func New(cfg Config) (*Verifier, error) {
	switch {
	case cfg.JWKSURL == "":
		return nil, errors.New("backendjwt: no JWKS URL")
	case cfg.Issuer == "":
		return nil, errors.New("backendjwt: no issuer")
	case cfg.Audience == "":
		return nil, errors.New("backendjwt: no audience")
	case cfg.Skew < 0 || cfg.MaxAge < 0:
		return nil, errors.New("backendjwt: negative skew or max age")
	}
	if cfg.Skew == 0 {
		cfg.Skew = DefaultSkew
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 60 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 5 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Verifier{cfg: cfg}, nil
}

// Verify checks token's signature with the fleet's keys, its typ, issuer,
// audience and validity window, and returns its claims. A failure wraps
// ErrInvalid or ErrNoKeys.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	if token == "" {
		return nil, ErrMissing
	}
	if len(token) > maxTokenBytes {
		return nil, fmt.Errorf("%w: %d bytes", ErrInvalid, len(token))
	}
	jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: %d signatures", ErrInvalid, len(jws.Signatures))
	}
	h := jws.Signatures[0].Header
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != Type {
		return nil, fmt.Errorf("%w: typ %q, want %q", ErrInvalid, typ, Type)
	}
	if h.KeyID == "" {
		return nil, fmt.Errorf("%w: no kid", ErrInvalid)
	}
	key, err := v.key(ctx, h.KeyID)
	if err != nil {
		return nil, err
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrInvalid, err)
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrInvalid, err)
	}
	if err := v.checkClaims(&c); err != nil {
		return nil, err
	}
	return &c, nil
}

func (v *Verifier) checkClaims(c *Claims) error {
	now := v.cfg.Now()
	switch {
	case c.Issuer != v.cfg.Issuer:
		return fmt.Errorf("%w: iss %q, want %q", ErrInvalid, c.Issuer, v.cfg.Issuer)
	case c.Audience != v.cfg.Audience:
		return fmt.Errorf("%w: aud %q, want %q", ErrInvalid, c.Audience, v.cfg.Audience)
	case c.ID == "" || c.ExpiresAt == 0 || c.NotBefore == 0:
		return fmt.Errorf("%w: jti, nbf and exp are required", ErrInvalid)
	case now.Add(-v.cfg.Skew).After(time.Unix(c.ExpiresAt, 0)):
		return fmt.Errorf("%w: expired at %d", ErrInvalid, c.ExpiresAt)
	case now.Add(v.cfg.Skew).Before(time.Unix(c.NotBefore, 0)):
		return fmt.Errorf("%w: not valid before %d", ErrInvalid, c.NotBefore)
	case c.ExpiresAt-c.NotBefore > 60:
		// verifierd never mints longer: a longer one is not ours.
		return fmt.Errorf("%w: lifetime %d s exceeds 60 s", ErrInvalid, c.ExpiresAt-c.NotBefore)
	}
	return nil
}

// RequestOptions says what VerifyRequest checks beyond the token.
type RequestOptions struct {
	// Transcript compares transcript_sha256 with the request's
	// X-TrustPlane-Transcript-Sha256 header, which verifierd forwards only
	// with --forward-proof-headers.
	Transcript bool
}

// VerifyRequest verifies r's assertion and that r is the request it was
// minted for: the same method and request target (and, with
// opts.Transcript, transcript digest).
func (v *Verifier) VerifyRequest(r *http.Request, opts RequestOptions) (*Claims, error) {
	vals := r.Header.Values(Header)
	if len(vals) == 0 {
		return nil, ErrMissing
	}
	if len(vals) > 1 {
		return nil, fmt.Errorf("%w: %d %s headers", ErrInvalid, len(vals), Header)
	}
	c, err := v.Verify(r.Context(), vals[0])
	if err != nil {
		return nil, err
	}
	if c.Method != r.Method {
		return nil, fmt.Errorf("%w: method %q, request %q", ErrInvalid, c.Method, r.Method)
	}
	if c.Target != r.RequestURI {
		return nil, fmt.Errorf("%w: target %q, request %q", ErrInvalid, c.Target, r.RequestURI)
	}
	if opts.Transcript {
		if got := r.Header.Get("X-TrustPlane-Transcript-Sha256"); !strings.EqualFold(got, c.TranscriptSHA256) || got == "" {
			return nil, fmt.Errorf("%w: transcript digest differs", ErrInvalid)
		}
	}
	return c, nil
}

type claimsKey struct{}

// FromContext returns the claims Middleware verified for the request.
func FromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok
}

// Middleware serves next only requests whose assertion verifies
// (VerifyRequest with opts), with the claims in the request context
// (FromContext). Others get 401, or 503 when no key set could be had.
func (v *Verifier) Middleware(opts RequestOptions, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := v.VerifyRequest(r, opts)
		if err != nil {
			status, code := http.StatusUnauthorized, "backend_assertion_invalid"
			if errors.Is(err, ErrNoKeys) {
				status, code = http.StatusServiceUnavailable, "backend_assertion_keys_unavailable"
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(status)
			_, _ = io.WriteString(w, `{"error":"`+code+`"}`+"\n")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), claimsKey{}, c)))
	})
}

// minRefetch spaces fetches for an unknown kid, so a stream of forged kids
// cannot turn the verifier into a JWKS flood.
const minRefetch = 5 * time.Second

// key returns the public key kid names. The set is refetched when half its
// max age has passed or when kid is unknown; a failed fetch keeps the last
// good set until its max age.
func (v *Verifier) key(ctx context.Context, kid string) (*jose.JSONWebKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.cfg.Now()
	age := now.Sub(v.fetched)
	known := v.keys != nil && len(v.keys.Key(kid)) > 0
	due := v.keys == nil || age >= v.maxAge/2 || (!known && now.Sub(v.tried) >= minRefetch)
	if due {
		v.tried = now
		if err := v.fetchLocked(ctx); err != nil && (v.keys == nil || v.cfg.Now().Sub(v.fetched) >= v.maxAge) {
			return nil, fmt.Errorf("%w: %v", ErrNoKeys, err)
		}
	}
	if v.keys == nil || v.cfg.Now().Sub(v.fetched) >= v.maxAge {
		return nil, fmt.Errorf("%w: key set older than %s", ErrNoKeys, v.maxAge)
	}
	for _, k := range v.keys.Key(kid) {
		if k.Use == "" || k.Use == "sig" {
			if k.Algorithm == "" || k.Algorithm == string(jose.EdDSA) {
				return &k, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: unknown kid %q", ErrInvalid, kid)
}

// fetchLocked fetches the JWKS; on success it replaces the set.
func (v *Verifier) fetchLocked(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.cfg.JWKSURL, nil)
	if err != nil {
		return err
	}
	resp, err := v.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", v.cfg.JWKSURL, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", v.cfg.JWKSURL, err)
	}
	if len(body) > maxJWKSBytes {
		return fmt.Errorf("GET %s: more than %d bytes", v.cfg.JWKSURL, maxJWKSBytes)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return fmt.Errorf("GET %s: %w", v.cfg.JWKSURL, err)
	}
	v.keys, v.fetched, v.maxAge = &set, v.cfg.Now(), maxAge(resp.Header.Get("Cache-Control"), v.cfg.MaxAge)
	return nil
}

// maxAge reads max-age from a Cache-Control value, capped at an hour so a
// retired key cannot linger in a cache for a day; def when absent.
func maxAge(cc string, def time.Duration) time.Duration {
	for d := range strings.SplitSeq(cc, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(d), "=")
		if !ok || !strings.EqualFold(name, "max-age") {
			continue
		}
		n, err := strconv.Atoi(strings.Trim(val, `"`))
		if err != nil || n <= 0 {
			return def
		}
		return min(time.Duration(n)*time.Second, time.Hour)
	}
	return def
}
