package passport

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"

	"github.com/tpcluster/tpcluster/internal/signerclass"
)

// ErrMalformed is wrapped by every Parse error: the token is not a
// structurally valid passport-v1 (SPEC §6 step 7, passport_malformed).
var ErrMalformed = errors.New("passport malformed")

// MaxTokenBytes is the longest compact token Parse reads [ours: SPEC §2 sets
// no limit]. SDK passports are about 600 bytes; the cap bounds the work and
// the stack a hostile token can cost.
const MaxTokenBytes = 8192

// Context is the optional ctx claim (SPEC §5.1), read by context policies.
type Context struct {
	ActorType, Purpose, ToolName, WorkflowID string

	// MaxTxnValue is max_txn_value as sent: the JSON number literal's text,
	// or the content of a JSON string (then MaxTxnValueIsString is set). It
	// is not checked here: SPEC §5.1 makes a bad value a context_mismatch,
	// not a malformed passport.
	MaxTxnValue         string
	MaxTxnValueIsString bool
	HasMaxTxnValue      bool
}

// Provenance is the optional provenance claim (SPEC §5.1).
type Provenance struct {
	Profile, SPIFFEID, SPIFFETrustDomain, Posture string
}

// Claims are the passport-v1 claims (SPEC §2). Parse fills every field but
// Ctx and Provenance, which are nil when their claim is absent.
type Claims struct {
	Issuer, Subject string

	// Audience is aud: the string, or the only element of a one-element array.
	Audience string

	IssuedAt, ExpiresAt int64 // Unix seconds

	JTI, TrustDomain string

	// CnfKID is cnf.kid. It is opaque (the Python SDK puts the public key
	// text there) and is never used to look a key up (SPEC §2).
	CnfKID string

	KeyBinding signerclass.Class // cnf.key_binding

	// PublicKey is the proof key, decoded from PublicKeyB64
	// (cnf.public_key_b64url); it is always 32 bytes.
	PublicKey    ed25519.PublicKey
	PublicKeyB64 string

	Ctx        *Context
	Provenance *Provenance
}

// Token is a parsed passport whose signature has not been checked yet.
//
// A Token holds a bearer credential: it formats itself, in every fmt verb and
// as text, without any of its content.
type Token struct {
	KID    string // the protected header's kid, if HasKID
	HasKID bool
	Claims Claims

	signingInput string // header and payload segments as received (RFC 7515 §5.2)
	sig          [ed25519.SignatureSize]byte
	pub          [ed25519.PublicKeySize]byte // backs Claims.PublicKey
	ctx          Context                     // backs Claims.Ctx
	prov         Provenance                  // backs Claims.Provenance
}

// VerifySignature reports whether the token's signature is a valid Ed25519
// signature by pub over its signing input (SPEC §6 step 9). A key of the
// wrong length verifies nothing; it never panics, unlike ed25519.Verify.
func (t *Token) VerifySignature(pub ed25519.PublicKey) bool {
	if t == nil || len(pub) != ed25519.PublicKeySize {
		return false
	}
	return ed25519.Verify(pub, []byte(t.signingInput), t.sig[:])
}

// Verifier checks one Ed25519 signature; *edverify.PublicKey is one. Its
// Verify must give crypto/ed25519.Verify's answers.
type Verifier interface {
	Verify(msg, sig []byte) bool
}

// VerifyWith is VerifySignature with a verifier the caller built once per
// key (an expanded key verifies faster). A nil v verifies nothing.
func (t *Token) VerifyWith(v Verifier) bool {
	if t == nil || v == nil {
		return false
	}
	return v.Verify([]byte(t.signingInput), t.sig[:])
}

// Format prints the token redacted, whatever the verb.
func (t *Token) Format(f fmt.State, verb rune) { f.Write([]byte("passport.Token{redacted}")) }

// MarshalText returns a redacted placeholder, so text and JSON encoders (and
// the loggers built on them) never write the token's content.
func (t *Token) MarshalText() ([]byte, error) { return []byte("passport.Token{redacted}"), nil }

// malformedError is a Parse failure. Its detail is a constant of this package
// and never carries input.
type malformedError struct{ detail string }

func (e *malformedError) Error() string { return "passport malformed: " + e.detail }
func (e *malformedError) Unwrap() error { return ErrMalformed }

func malformed(detail string) error { return &malformedError{detail} }

// within prefixes a malformed error's detail with the part of the token it
// is about.
func within(part string, err error) error {
	if m, ok := err.(*malformedError); ok {
		return &malformedError{part + ": " + m.detail}
	}
	return err
}

// Parse reads a compact passport-v1 token and checks everything SPEC §2 says
// about its structure (SPEC §6 step 7): three canonical base64url segments, a
// protected header with alg EdDSA, every required claim with its type, no
// duplicate member names. It does not verify the signature or the time
// window. Every error wraps ErrMalformed.
func Parse(compact string) (*Token, error) {
	if len(compact) > MaxTokenBytes {
		return nil, malformed("token longer than 8192 bytes")
	}
	h, rest, ok1 := strings.Cut(compact, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(s, '.') >= 0 {
		return nil, malformed("compact JWS must have three segments")
	}
	if len(h) == 0 || len(p) == 0 {
		return nil, malformed("empty header or payload segment")
	}

	var tok Token
	if n, ok := decodeB64(tok.sig[:], s); !ok || n != len(tok.sig) {
		return nil, malformed("signature is not canonical base64url of 64 bytes")
	}

	// Header and payload are decoded into one buffer so that every string
	// kept is a span of it; the spans are copied into one string at the end.
	// A stack buffer holds every token of ordinary size (SDK passports decode
	// to about 450 bytes); only larger ones cost an allocation.
	var small [smallDecoded]byte
	buf := small[:]
	if need := (len(h) + len(p)) * 3 / 4; need > len(buf) {
		buf = make([]byte, need)
	}
	hn, ok := decodeB64(buf, h)
	if !ok {
		return nil, malformed("header is not canonical base64url")
	}
	pn, ok := decodeB64(buf[hn:], p)
	if !ok {
		return nil, malformed("payload is not canonical base64url")
	}

	var names [smallNames]name
	var k kept
	sc := scanner{buf: buf[:hn], names: names[:0]}
	if err := parseHeader(&sc, &k, &tok); err != nil {
		return nil, within("header", err)
	}
	sc = scanner{buf: buf[:hn+pn], pos: hn, names: names[:0]}
	if err := parsePayload(&sc, &tok, &k); err != nil {
		return nil, within("payload", err)
	}

	t := new(Token)
	*t = tok
	t.signingInput = compact[:len(h)+1+len(p)]
	k.assign(t, buf[:hn+pn])
	return t, nil
}
