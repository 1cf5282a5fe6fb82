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
	"sync/atomic"
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
	// MoreKeys are other private keys of this node, held during a rotation
	// (the new key while it is listed next, the old one until it is
	// retired), so that switching keys needs a new trust material and no
	// restart. With Listed keys, the node signs with the first of Key and
	// MoreKeys that is listed active; without, always with Key. If empty,
	// the node has one key.
	MoreKeys []*keyfile.PrivateKey
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

// Minter mints assertions with the node's key listed active. It is safe
// for concurrent use; SetKeys replaces the node's keys while it mints.
type Minter struct {
	issuer string
	fleet  []*keyfile.PublicKey // Config.FleetKeys
	keys   atomic.Pointer[keySet]
	listed func() []*bundle.AssertionKey
	now    func() time.Time
}

// keySet is the node's private keys and the JWKS they make without Listed
// keys: one immutable value, swapped whole by SetKeys, so that a mint
// loads it once and signs with one consistent key and header.
type keySet struct {
	keys []signingKey // Config.Key first, then Config.MoreKeys
	jwks []byte
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
	m := &Minter{issuer: cfg.Issuer, fleet: slices.Clone(cfg.FleetKeys), now: cfg.Now, listed: cfg.Listed}
	if err := m.SetKeys(append([]*keyfile.PrivateKey{cfg.Key}, cfg.MoreKeys...)); err != nil {
		return nil, err
	}
	return m, nil
}

// SetKeys replaces the node's private keys (Config.Key and MoreKeys: the
// first signs when no trust material lists keys) in one atomic step, for a
// node that re-reads its key directory (docs/BACKEND-JWT.md): a mint in
// flight finishes with the set it loaded. On error the keys in use stay.
func (m *Minter) SetKeys(keys []*keyfile.PrivateKey) error {
	if len(keys) == 0 {
		return errors.New("assertion: no key")
	}
	set := &keySet{}
	var public []*keyfile.PublicKey
	for _, k := range keys {
		if k == nil {
			return errors.New("assertion: a nil key")
		}
		h, err := json.Marshal(map[string]string{"alg": "EdDSA", "kid": k.KID(), "typ": typ})
		if err != nil {
			return fmt.Errorf("assertion: header: %w", err)
		}
		set.keys = append(set.keys, signingKey{key: k, header: base64.RawURLEncoding.EncodeToString(h)})
		public = append(public, k.Public())
	}
	jwks, err := JWKS(append(public, m.fleet...)) // refuses one kid with two keys
	if err != nil {
		return err
	}
	set.jwks = jwks
	m.keys.Store(set)
	return nil
}

// Keys returns the public halves of the node's private keys, in order.
func (m *Minter) Keys() []*keyfile.PublicKey {
	set := m.keys.Load()
	out := make([]*keyfile.PublicKey, len(set.keys))
	for i, sk := range set.keys {
		out[i] = sk.key.Public()
	}
	return out
}

// signingKey is one private key and its JWS protected header.
type signingKey struct {
	key    *keyfile.PrivateKey
	header string // base64url of the JWS protected header
}

// KID is the key id of the node's first key (Config.Key, or the first
// given to SetKeys), the key the node signs with when no
// trust material lists keys.
func (m *Minter) KID() string { return m.keys.Load().keys[0].key.KID() }

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
	return slices.Clone(m.keys.Load().jwks)
}

func (m *Minter) listedKeys() []*bundle.AssertionKey {
	if m.listed == nil {
		return nil
	}
	return m.listed()
}

// signer returns the key to sign with now, or why none may sign: with a
// listed key set, the first of the node's keys listed active with the same
// public key; without one, Config.Key.
func (m *Minter) signer() (signingKey, error) {
	set := m.keys.Load() // once: one consistent set for this mint
	listed := m.listedKeys()
	if listed == nil {
		return set.keys[0], nil
	}
	var why error
	for _, sk := range set.keys {
		err := mayMint(sk.key.Public(), listed)
		if err == nil {
			return sk, nil
		}
		if why == nil {
			why = err // the reason for Config.Key, the node's main key
		}
	}
	return signingKey{}, why
}

// mayMint reports why own may not sign under listed, or nil: it must be
// listed active with the same public key.
func mayMint(own *keyfile.PublicKey, listed []*bundle.AssertionKey) error {
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
	sk, err := m.signer()
	if err != nil {
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
	signing := sk.header + "." + base64.RawURLEncoding.EncodeToString(p)
	sig := sk.key.Sign([]byte(signing))
	return Minted{Token: signing + "." + base64.RawURLEncoding.EncodeToString(sig), JTI: c.ID, KID: sk.key.KID()}, nil
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
