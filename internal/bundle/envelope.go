package bundle

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gowebpki/jcs"

	"github.com/tpcluster/tpcluster/internal/keyfile"
)

// The envelope of SPEC §5.4.
const (
	// SignatureFormat is the only signature format that verifies.
	SignatureFormat = "ed25519-jcs-v1"
	// UnsignedFormat marks an unsigned skeleton (SPEC §5.1), as the public
	// vector bundle-v1.source-rules.json is.
	UnsignedFormat = "unsigned-skeleton"
	// SignatureAlg is the only signed_by.alg of a signed document.
	SignatureAlg = "EdDSA"
)

// Errors returned by Verify, ParsePolicy and ParseTrustMaterial (wrapped;
// match with errors.Is).
var (
	// ErrUnsigned: the document carries no signature (or the
	// unsigned-skeleton format) and unsigned documents are not allowed.
	ErrUnsigned = errors.New("document is unsigned")
	// ErrUnknownKey: signed_by.kid names no accepted key.
	ErrUnknownKey = errors.New("signing key not accepted")
	// ErrBadSignature: the signature does not verify with the named key.
	ErrBadSignature = errors.New("signature does not verify")
)

// SigningKey is a bundle-signing private key (SPEC §5.4): it signs policy
// bundles and trust material, and nothing else. It is a distinct type from
// BeaconSigningKey so the compiler refuses one where the other belongs.
type SigningKey struct {
	k *keyfile.PrivateKey
}

// NewSigningKey returns k in its bundle-signing role.
func NewSigningKey(k *keyfile.PrivateKey) SigningKey { return SigningKey{k: k} }

// KID returns the key id written to signed_by.kid.
func (k SigningKey) KID() string {
	if k.k == nil {
		return ""
	}
	return k.k.KID()
}

// String names the key id only.
func (k SigningKey) String() string { return fmt.Sprintf("bundle.SigningKey{kid: %q}", k.KID()) }

// VerifyKey is an accepted bundle-signing public key (--bundle-public-key).
// Key must be ed25519.PublicKeySize bytes; other keys verify nothing.
type VerifyKey struct {
	KID string
	Key ed25519.PublicKey
}

// NewVerifyKey returns p in its bundle-verifying role.
func NewVerifyKey(p *keyfile.PublicKey) VerifyKey { return VerifyKey{KID: p.KID, Key: p.Key} }

// Sign signs doc, a policy bundle, trust material or any JSON object, with k:
// it sets signed_by to {issuer, kid, alg:"EdDSA"} and signature to
// {format:"ed25519-jcs-v1", value}, where value signs the RFC 8785 form of
// the document without its signature member. Nothing else changes (sequence
// and issued_at included); the result is the RFC 8785 form of the signed
// document. Sign does not check the document's schema.
func Sign(doc []byte, k SigningKey, issuer string) ([]byte, error) {
	return sign(doc, k.k, issuer)
}

// Verify checks doc's envelope against keys: signed_by.kid selects the key,
// and the signature must verify over the RFC 8785 form of the document
// without its signature member. It returns nil only for a valid signature;
// otherwise the error wraps ErrUnsigned, ErrUnknownKey or ErrBadSignature, or
// describes a malformed envelope. It does not check the document's schema.
func Verify(doc []byte, keys []VerifyKey) error {
	top, err := parseTree(doc)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	signed, err := verifyEnvelope(top, verifyKeys(keys))
	if err == nil && !signed {
		err = ErrUnsigned
	}
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	return nil
}

// pubKey is a verifying key whatever its role; roles stay apart in the
// exported types and meet only here.
type pubKey struct {
	kid string
	key ed25519.PublicKey
}

func verifyKeys(keys []VerifyKey) []pubKey {
	out := make([]pubKey, len(keys))
	for i, k := range keys {
		out[i] = pubKey{k.KID, k.Key}
	}
	return out
}

func sign(doc []byte, k *keyfile.PrivateKey, issuer string) ([]byte, error) {
	if k == nil {
		return nil, errors.New("bundle: sign: no key")
	}
	if issuer == "" {
		return nil, errors.New("bundle: sign: empty issuer")
	}
	top, err := parseTree(doc)
	if err != nil {
		return nil, fmt.Errorf("bundle: sign: %w", err)
	}
	delete(top, "signature")
	top["signed_by"] = map[string]any{"issuer": issuer, "kid": k.KID(), "alg": SignatureAlg}
	msg, err := canonical(top)
	if err != nil {
		return nil, fmt.Errorf("bundle: sign: %w", err)
	}
	top["signature"] = map[string]any{
		"format": SignatureFormat,
		"value":  base64.RawURLEncoding.EncodeToString(k.Sign(msg)),
	}
	out, err := canonical(top)
	if err != nil {
		return nil, fmt.Errorf("bundle: sign: %w", err)
	}
	return out, nil
}

// canonical returns the RFC 8785 form of a tree from parseTree (json.Number
// keeps each number's text until jcs formats it).
func canonical(tree map[string]any) ([]byte, error) {
	raw, err := json.Marshal(tree)
	if err != nil {
		return nil, err
	}
	out, err := jcs.Transform(raw)
	if err != nil {
		return nil, fmt.Errorf("not canonicalizable (RFC 8785): %v", err)
	}
	return out, nil
}

// verifyEnvelope reports whether top is signed and, if so, verifies it with
// one of keys. An unsigned document (no signature member, or the
// unsigned-skeleton format) returns false and no error; whether that is
// acceptable is the caller's decision. A document that claims a signature is
// never treated as unsigned, whatever the options say.
func verifyEnvelope(top map[string]any, keys []pubKey) (bool, error) {
	doc := object{m: top}
	sig, ok, err := doc.obj("signature")
	if err != nil {
		return false, err
	}
	by, hasBy, err := doc.obj("signed_by")
	if err != nil {
		return false, err
	}
	if hasBy {
		if err := by.only("issuer", "kid", "alg"); err != nil {
			return false, err
		}
	}
	if !ok {
		return false, nil
	}
	if err := sig.only("format", "value"); err != nil {
		return false, err
	}
	format, err := sig.required("format")
	if err != nil {
		return false, err
	}
	if format == UnsignedFormat {
		return false, nil
	}
	if format != SignatureFormat {
		return false, fmt.Errorf("signature.format: %q is not %q", format, SignatureFormat)
	}
	if !hasBy {
		return false, missing(doc, "signed_by")
	}
	if _, err := by.required("issuer"); err != nil {
		return false, err
	}
	kid, err := by.required("kid")
	if err != nil {
		return false, err
	}
	// The algorithm comes from our configuration; the document's is only
	// checked (STYLE §13).
	if alg, err := by.required("alg"); err != nil {
		return false, err
	} else if alg != SignatureAlg {
		return false, fmt.Errorf("signed_by.alg: %q is not %q", alg, SignatureAlg)
	}
	value, err := sig.required("value")
	if err != nil {
		return false, err
	}
	s, err := base64.RawURLEncoding.Strict().DecodeString(value)
	if err != nil || base64.RawURLEncoding.EncodeToString(s) != value || len(s) != ed25519.SignatureSize {
		return false, errors.New("signature.value: not canonical unpadded base64url of 64 bytes")
	}
	var candidates []pubKey
	for _, k := range keys {
		if k.kid == kid && len(k.key) == ed25519.PublicKeySize {
			candidates = append(candidates, k)
		}
	}
	if len(candidates) == 0 {
		return false, fmt.Errorf("signed_by.kid %q: %w", kid, ErrUnknownKey)
	}
	delete(top, "signature")
	msg, err := canonical(top)
	top["signature"] = sig.m
	if err != nil {
		return false, err
	}
	for _, k := range candidates {
		if ed25519.Verify(k.key, msg, s) {
			return true, nil
		}
	}
	return false, fmt.Errorf("signed_by.kid %q: %w", kid, ErrBadSignature)
}

// header is what every document kind shares: version, kind, the envelope,
// sequence and issued_at (SPEC §5.3, §5.4).
type header struct {
	signed   bool
	sequence int64
	issuedAt time.Time
}

// loadHeader checks version and kind, verifies the envelope under o, and
// reads sequence and issued_at. It runs before the schema is read, so
// nothing of an unauthenticated document is interpreted beyond these.
func loadHeader(top map[string]any, version, kind string, keys []pubKey, allowUnsigned bool, modTime time.Time) (header, error) {
	doc := object{m: top}
	v, err := doc.required("version")
	if err != nil {
		return header{}, err
	}
	if v != version {
		return header{}, fmt.Errorf("version: %q is not %q", v, version)
	}
	if kind != "" {
		k, err := doc.required("kind")
		if err != nil {
			return header{}, err
		}
		if k != kind {
			return header{}, fmt.Errorf("kind: %q is not %q", k, kind)
		}
	}
	signed, err := verifyEnvelope(top, keys)
	if err != nil {
		return header{}, err
	}
	if !signed && !allowUnsigned {
		return header{}, fmt.Errorf("%w (unsigned documents need --dev-allow-unsigned-bundles)", ErrUnsigned)
	}
	h := header{signed: signed, issuedAt: modTime.UTC()}
	seq, hasSeq, err := doc.integer("sequence")
	if err != nil {
		return header{}, err
	}
	if seq < 0 {
		return header{}, errors.New("sequence: must not be negative")
	}
	at, hasAt, err := doc.timestamp("issued_at")
	if err != nil {
		return header{}, err
	}
	if signed && !hasSeq {
		return header{}, missing(doc, "sequence")
	}
	if signed && !hasAt {
		return header{}, missing(doc, "issued_at")
	}
	h.sequence = seq
	if hasAt {
		h.issuedAt = at
	}
	return h, nil
}
