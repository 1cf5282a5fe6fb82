package signer

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultPassportTTL is the lifetime of a passport whose options give none,
// as in the Python SDK.
const DefaultPassportTTL = 10 * time.Minute

// PassportOptions are the claims of a self-issued passport.
type PassportOptions struct {
	// Issuer, Subject, Audience and TrustDomain become iss, sub, aud and
	// trust_domain. Each must be non-empty without surrounding whitespace,
	// as the Python SDK requires.
	Issuer, Subject, Audience, TrustDomain string
	// KID is the JWS header kid. If empty, the header has no kid: the
	// verifier then finds the key by cnf (SPEC §2 [ours]); the Python SDK
	// always sets one.
	KID string
	// IssuedAt is iat, truncated to whole seconds. If zero, the current time.
	IssuedAt time.Time
	// TTL is exp - iat. If zero, DefaultPassportTTL; negative is refused.
	TTL time.Duration
	// JTI is jti, trimmed. If empty, "jti-" and the base64url of 16 random
	// bytes, as the Python SDK does.
	JTI string
	// KeyBinding is cnf.key_binding. If empty, "software", the only class a
	// self-held key can honestly claim; any other text is written as given,
	// so tests can mint passports a verifier must refuse.
	KeyBinding string
	// Ctx and Provenance, if non-nil, add the optional ctx and provenance
	// claims of SPEC §5.1 after cnf.
	Ctx        *Context
	Provenance *Provenance
	// Cnf, if non-empty, is the text of cnf.kid and cnf.public_key_b64url in
	// place of the signing key's own: the key then signs a passport for
	// another key, as a broker does, and the holder of Cnf's key signs the
	// requests. It is written as given. If empty, the passport is
	// self-issued.
	Cnf string
}

// Context is the ctx claim (SPEC §5.1). Empty members are omitted.
type Context struct {
	ActorType, Purpose, ToolName, WorkflowID string
	// MaxTxnValue is a strict decimal. It is written as a JSON string
	// ("1000.00", as in the broker vectors) unless MaxTxnValueIsNumber.
	MaxTxnValue         string
	MaxTxnValueIsNumber bool
}

// Provenance is the provenance claim (SPEC §5.1). Empty members are
// omitted.
type Provenance struct {
	Profile, SPIFFEID, SPIFFETrustDomain, Posture string
}

// MintPassport returns a compact JWS passport signed by k, byte for byte
// what the Python SDK's issue_passport produces for the same options: header
// {"alg":"EdDSA","kid":..,"typ":"JWT"}, claims in the SDK's member order
// (iss, sub, aud, iat, exp, jti, trust_domain, cnf{kid, public_key_b64url,
// key_binding}), compact JSON as Python's json.dumps writes it with
// ensure_ascii=False (non-ASCII as UTF-8, no HTML escaping), and cnf.kid set
// to the public key text as the SDK does. ctx and provenance, when given,
// follow cnf [ours].
func (k *Key) MintPassport(o PassportOptions) (string, error) {
	for _, f := range []struct{ name, v string }{
		{"issuer", o.Issuer}, {"subject", o.Subject}, {"audience", o.Audience}, {"trust domain", o.TrustDomain},
	} {
		if strings.TrimSpace(f.v) == "" {
			return "", fmt.Errorf("signer: passport %s empty", f.name)
		}
		if strings.TrimSpace(f.v) != f.v {
			return "", fmt.Errorf("signer: passport %s has surrounding whitespace", f.name)
		}
	}
	ttl := o.TTL
	switch {
	case ttl == 0:
		ttl = DefaultPassportTTL
	case ttl < 0:
		return "", errors.New("signer: passport ttl negative")
	}
	now := o.IssuedAt
	if now.IsZero() {
		now = time.Now()
	}
	now = now.Truncate(time.Second)
	jti := strings.TrimSpace(o.JTI)
	if jti == "" {
		var b [16]byte
		rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
		jti = "jti-" + base64.RawURLEncoding.EncodeToString(b[:])
	}
	kb := o.KeyBinding
	if kb == "" {
		kb = "software"
	}

	var w jsonWriter
	w.begin()
	w.member("alg").str("EdDSA")
	if o.KID != "" {
		w.member("kid").str(o.KID)
	}
	w.member("typ").str("JWT")
	w.end()
	header := w.take()

	w.begin()
	w.member("iss").str(o.Issuer)
	w.member("sub").str(o.Subject)
	w.member("aud").str(o.Audience)
	w.member("iat").int(now.Unix())
	// Python: int((now + ttl).timestamp()), truncating a fractional TTL.
	w.member("exp").int(now.Add(ttl).Truncate(time.Second).Unix())
	w.member("jti").str(jti)
	w.member("trust_domain").str(o.TrustDomain)
	cnf := k.pub
	if o.Cnf != "" {
		cnf = o.Cnf
	}
	w.member("cnf").begin()
	w.member("kid").str(cnf)
	w.member("public_key_b64url").str(cnf)
	w.member("key_binding").str(kb)
	w.end()
	if c := o.Ctx; c != nil {
		w.member("ctx").begin()
		w.optional("actor_type", c.ActorType)
		w.optional("purpose", c.Purpose)
		w.optional("tool_name", c.ToolName)
		w.optional("workflow_id", c.WorkflowID)
		if c.MaxTxnValue != "" {
			if c.MaxTxnValueIsNumber {
				if !isJSONNumber(c.MaxTxnValue) {
					return "", errors.New("signer: ctx max_txn_value is not a JSON number")
				}
				w.member("max_txn_value").raw(c.MaxTxnValue)
			} else {
				w.member("max_txn_value").str(c.MaxTxnValue)
			}
		}
		w.end()
	}
	if p := o.Provenance; p != nil {
		w.member("provenance").begin()
		w.optional("profile", p.Profile)
		w.optional("spiffe_id", p.SPIFFEID)
		w.optional("spiffe_trust_domain", p.SPIFFETrustDomain)
		w.optional("posture", p.Posture)
		w.end()
	}
	w.end()
	if w.err != nil {
		return "", w.err
	}
	claims := w.take()

	signing := b64(header) + "." + b64(claims)
	return signing + "." + b64(k.sign([]byte(signing))), nil
}

// isJSONNumber reports whether s is exactly one JSON number: valid JSON text
// that starts like a number is one.
func isJSONNumber(s string) bool {
	return s != "" && (s[0] == '-' || '0' <= s[0] && s[0] <= '9') &&
		strings.TrimSpace(s) == s && json.Valid([]byte(s))
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jsonWriter writes compact JSON as Python's json.dumps(separators=(",",
// ":"), ensure_ascii=False) does. encoding/json differs: it escapes U+2028
// and U+2029 and replaces invalid UTF-8 instead of refusing it.
type jsonWriter struct {
	b     []byte
	first bool // no member written yet in the current object
	err   error
}

func (w *jsonWriter) begin() *jsonWriter { w.b = append(w.b, '{'); w.first = true; return w }
func (w *jsonWriter) end()               { w.b = append(w.b, '}'); w.first = false }

func (w *jsonWriter) take() []byte {
	b := w.b
	w.b = nil
	return b
}

func (w *jsonWriter) member(name string) *jsonWriter {
	if !w.first {
		w.b = append(w.b, ',')
	}
	w.first = false
	w.str(name)
	w.b = append(w.b, ':')
	return w
}

func (w *jsonWriter) optional(name, v string) {
	if v != "" {
		w.member(name).str(v)
	}
}

func (w *jsonWriter) int(v int64)  { w.b = strconv.AppendInt(w.b, v, 10) }
func (w *jsonWriter) raw(v string) { w.b = append(w.b, v...) }

// str writes a JSON string with Python's escapes: \" \\ \b \f \n \r \t,
// other control characters as \u00xx in lower-case hex, everything else as
// is. Text that is not UTF-8 cannot come out of a Python str, so it is an
// error.
func (w *jsonWriter) str(s string) {
	if !utf8.ValidString(s) {
		w.err = errors.New("signer: passport claim is not valid UTF-8")
	}
	w.b = append(w.b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\':
			w.b = append(w.b, '\\', c)
		case '\b':
			w.b = append(w.b, `\b`...)
		case '\f':
			w.b = append(w.b, `\f`...)
		case '\n':
			w.b = append(w.b, `\n`...)
		case '\r':
			w.b = append(w.b, `\r`...)
		case '\t':
			w.b = append(w.b, `\t`...)
		default:
			if c < 0x20 {
				const hex = "0123456789abcdef"
				w.b = append(w.b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			} else {
				w.b = append(w.b, c)
			}
		}
	}
	w.b = append(w.b, '"')
}
