// Package assertion mints backend assertions (docs/BACKEND-JWT.md): the
// per-request EdDSA JWS that verifierd sends upstream on allow, for routes
// whose bundle entry asks for one, and the fleet's JWKS that upstreams
// verify it with (package backendjwt).
package assertion

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
)

// typ is the JWS typ of an assertion (backendjwt.Type).
const typ = "tp-assertion+jwt"

// claims are an assertion's claims, the JSON of backendjwt.Claims; this
// package does not import it, so that the verifier never links an HTTP
// client it does not use (TestMintVerifies checks they agree).
type claims struct {
	Issuer           string `json:"iss"`
	Subject          string `json:"sub"`
	Audience         string `json:"aud"`
	IssuedAt         int64  `json:"iat"`
	NotBefore        int64  `json:"nbf"`
	ExpiresAt        int64  `json:"exp"`
	ID               string `json:"jti"`
	PassportJTI      string `json:"passport_jti"`
	RouteID          string `json:"route_id"`
	Method           string `json:"method"`
	Target           string `json:"target"`
	TranscriptSHA256 string `json:"transcript_sha256"`
	KeyBinding       string `json:"key_binding"`
	TrustDomain      string `json:"trust_domain"`
	EventID          string `json:"event_id"`
	RequestID        string `json:"request_id"`
}

// Config configures a Minter.
type Config struct {
	// Issuer is the fleet's issuer name, every assertion's iss. Required.
	Issuer string
	// Key is this node's signing key. Required.
	Key *keyfile.PrivateKey
	// FleetKeys are the public keys the JWKS lists besides Key's: the other
	// nodes' keys, a next key published before it signs, a retired key
	// kept until the assertions it signed expired. Every node of a fleet is
	// given the same list, so every node serves the same JWKS.
	FleetKeys []*keyfile.PublicKey
	// Listed, if set, returns the signed trust material's assertion_keys
	// (nil when it has none). When it lists keys, they alone make the
	// JWKS, and the node signs only while its own key is listed active: a
	// next key is published before it signs, a retired one after.
	Listed func() []*bundle.AssertionKey
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
}

// Minter mints assertions with one node key. It is safe for concurrent use.
type Minter struct {
	issuer string
	key    *keyfile.PrivateKey
	header string // base64url of the JWS protected header
	jwks   []byte // without Listed keys
	listed func() []*bundle.AssertionKey
	now    func() time.Time
}

// New checks cfg and returns a Minter.
func New(cfg Config) (*Minter, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("assertion: no issuer")
	}
	if cfg.Key == nil {
		return nil, errors.New("assertion: no key")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h, err := json.Marshal(map[string]string{"alg": "EdDSA", "kid": cfg.Key.KID(), "typ": typ})
	if err != nil {
		return nil, fmt.Errorf("assertion: header: %w", err)
	}
	jwks, err := JWKS(append([]*keyfile.PublicKey{cfg.Key.Public()}, cfg.FleetKeys...))
	if err != nil {
		return nil, err
	}
	return &Minter{
		issuer: cfg.Issuer, key: cfg.Key, now: cfg.Now, jwks: jwks, listed: cfg.Listed,
		header: base64.RawURLEncoding.EncodeToString(h),
	}, nil
}

// KID is the key id assertions are signed with.
func (m *Minter) KID() string { return m.key.KID() }

// JWKSDocument is the fleet's RFC 7517 key set, as served at
// /_tp/jwks.json: the trust material's assertion_keys when it lists any,
// else this node's key and Config.FleetKeys.
func (m *Minter) JWKSDocument() []byte {
	if listed := m.listedKeys(); listed != nil {
		keys := make([]*keyfile.PublicKey, len(listed))
		for i, k := range listed {
			keys[i] = &keyfile.PublicKey{KID: k.KID, Key: k.PublicKey}
		}
		if doc, err := JWKS(keys); err == nil {
			return doc
		}
		// Unreachable: the trust material refuses a kid listed twice.
	}
	return slices.Clone(m.jwks)
}

func (m *Minter) listedKeys() []*bundle.AssertionKey {
	if m.listed == nil {
		return nil
	}
	return m.listed()
}

// mayMint reports why this node's key may not sign now, or nil: with a
// listed key set, the key must be listed active with the same public key.
func (m *Minter) mayMint() error {
	listed := m.listedKeys()
	if listed == nil {
		return nil
	}
	own := m.key.Public()
	for _, k := range listed {
		if k.KID != own.KID {
			continue
		}
		switch {
		case !k.PublicKey.Equal(own.Key):
			return fmt.Errorf("assertion: the trust material lists kid %q with another public key", own.KID)
		case k.Status != bundle.AssertionKeyActive:
			return fmt.Errorf("assertion: key %q is not active in the trust material's assertion_keys", own.KID)
		}
		return nil
	}
	return fmt.Errorf("assertion: key %q is not in the trust material's assertion_keys", own.KID)
}

// Request is what an assertion states about one allowed request.
type Request struct {
	Spec             *bundle.BackendAssertion // the route's backend_assertion
	Subject          string
	PassportJTI      string
	RouteID          string
	Method           string
	Target           string
	TranscriptSHA256 string
	KeyBinding       string
	TrustDomain      string
	EventID          string
	RequestID        string
}

// Minted is one assertion.
type Minted struct {
	Token string // compact JWS
	JTI   string
	KID   string
}

// Mint signs a new assertion for r: a fresh jti, valid from now for the
// route's TTL (at most bundle.MaxAssertionTTL).
func (m *Minter) Mint(r *Request) (Minted, error) {
	if r.Spec == nil || r.Spec.Audience == "" {
		return Minted{}, errors.New("assertion: the route names no backend audience")
	}
	if err := m.mayMint(); err != nil {
		return Minted{}, err
	}
	ttl := min(r.Spec.TTL, bundle.MaxAssertionTTL)
	if ttl <= 0 {
		return Minted{}, errors.New("assertion: no ttl")
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Minted{}, fmt.Errorf("assertion: jti: %w", err)
	}
	now := m.now().Unix()
	c := claims{
		Issuer: m.issuer, Subject: r.Subject, Audience: r.Spec.Audience,
		IssuedAt: now, NotBefore: now, ExpiresAt: now + int64(ttl/time.Second),
		ID:          base64.RawURLEncoding.EncodeToString(id[:]),
		PassportJTI: r.PassportJTI, RouteID: r.RouteID, Method: r.Method, Target: r.Target,
		TranscriptSHA256: r.TranscriptSHA256, KeyBinding: r.KeyBinding, TrustDomain: r.TrustDomain,
		EventID: r.EventID, RequestID: r.RequestID,
	}
	p, err := json.Marshal(&c)
	if err != nil {
		return Minted{}, fmt.Errorf("assertion: claims: %w", err)
	}
	signing := m.header + "." + base64.RawURLEncoding.EncodeToString(p)
	sig := m.key.Sign([]byte(signing))
	return Minted{Token: signing + "." + base64.RawURLEncoding.EncodeToString(sig), JTI: c.ID, KID: m.key.KID()}, nil
}

// jwk is one RFC 8037 OKP key of the set.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

// JWKS returns the RFC 7517 set of keys, in order, without repeats. Two
// different keys with one kid are refused: an upstream could not tell
// which one signed.
func JWKS(keys []*keyfile.PublicKey) ([]byte, error) {
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{}}
	seen := map[string]string{}
	for _, k := range keys {
		x := base64.RawURLEncoding.EncodeToString(k.Key)
		if prev, ok := seen[k.KID]; ok {
			if prev != x {
				return nil, fmt.Errorf("assertion: two different keys have kid %q", k.KID)
			}
			continue
		}
		seen[k.KID] = x
		set.Keys = append(set.Keys, jwk{Kty: "OKP", Crv: "Ed25519", X: x, Kid: k.KID, Use: "sig", Alg: "EdDSA"})
	}
	return json.Marshal(&set)
}
