package passport

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tpcluster/tpcluster/internal/signerclass"
)

// The oracle is a second, independent Parse: go-jose v4 reads the compact
// JWS and checks the signature; encoding/json decodes header and claims; the
// SPEC rules that neither library applies are written out again here in the
// plainest form, without sharing code with the package. The differential
// fuzz tests assert that Parse and the oracle agree on every input.
//
// Where go-jose and SPEC legitimately differ, the SPEC rule is applied here
// and the comment says so:
//   - go-jose's base64url decoder accepts non-canonical trailing bits and
//     skips CR and LF, and ParseSigned also strips white space and accepts
//     the JSON serialization; SPEC §2 wants canonical unpadded base64url of a
//     compact JWS. The oracle re-encodes every segment and compares, and
//     uses ParseSignedCompact.
//   - go-jose ignores a header member whose value is null (kid: null is "no
//     kid"); SPEC: kid, if present, is a string.
//   - go-jose accepts crit (for b64), jku, x5u, jwk and x5c, and honours
//     b64:false; SPEC §2 refuses the first five and we refuse b64 [ours].
//   - go-jose decodes header members it does not know into interface{}
//     (refusing a number beyond float64, such as 1e400) and requires nonce
//     to be a string (JWS for ACME); SPEC ignores unknown header members. For
//     such a header the oracle's verdict is its SPEC checks alone, and the
//     signature is checked with crypto/ed25519 directly.
//   - encoding/json replaces invalid UTF-8 and lone surrogate escapes by
//     U+FFFD, matches member names case-insensitively and keeps the last of
//     duplicate members; SPEC: strict JSON, no duplicates [ours]. The oracle
//     checks UTF-8, surrogates, duplicates and depth before decoding, and
//     decodes objects into maps (exact names) rather than structs.
type oracleResult struct {
	claims   Claims
	kid      string
	hasKID   bool
	verified bool // signature valid for the oracle's key
}

var refusedHeaderMembers = []string{"crit", "jku", "x5u", "jwk", "x5c", "b64"}

// oracleParse returns the oracle's result for compact, or the reason it
// refuses it.
func oracleParse(compact string, pub ed25519.PublicKey) (*oracleResult, error) {
	if len(compact) > MaxTokenBytes {
		return nil, errors.New("too long")
	}
	parts := strings.Split(compact, ".")
	if len(parts) != 3 {
		return nil, errors.New("not three segments")
	}
	var dec [3][]byte
	for i, p := range parts {
		b, err := base64.RawURLEncoding.DecodeString(p)
		if err != nil || base64.RawURLEncoding.EncodeToString(b) != p {
			return nil, errors.New("segment not canonical base64url")
		}
		dec[i] = b
	}
	header, payload, sig := dec[0], dec[1], dec[2]
	if len(sig) != ed25519.SignatureSize {
		return nil, errors.New("signature length")
	}

	var r oracleResult
	if err := oracleHeader(header, &r); err != nil {
		return nil, err
	}
	jws, err := jose.ParseSignedCompact(compact, []jose.SignatureAlgorithm{jose.EdDSA})
	switch {
	case err == nil:
		if !bytes.Equal(jws.UnsafePayloadWithoutVerification(), payload) {
			return nil, errors.New("go-jose decoded another payload") // would be a bug in the oracle
		}
		_, verr := jws.Verify(pub)
		r.verified = verr == nil
	case goJoseOnlyRefusal(header):
		signingInput := compact[:len(parts[0])+1+len(parts[1])]
		r.verified = ed25519.Verify(pub, []byte(signingInput), sig)
	default:
		return nil, err
	}
	if err := oracleClaims(payload, &r.claims); err != nil {
		return nil, err
	}
	return &r, nil
}

// goJoseOnlyRefusal reports whether header holds something go-jose refuses
// but SPEC ignores (see the list above).
func goJoseOnlyRefusal(header []byte) bool {
	var m map[string]any
	if json.Unmarshal(header, &m) != nil {
		return true // a number out of float64 range in an ignored member
	}
	nonce, ok := m["nonce"]
	if _, isString := nonce.(string); ok && !isString {
		return true
	}
	return false
}

func oracleHeader(b []byte, r *oracleResult) error {
	m, err := oracleObject(b)
	if err != nil {
		return err
	}
	for _, k := range refusedHeaderMembers {
		if _, ok := m[k]; ok {
			return errors.New("refused header member")
		}
	}
	if alg, ok := oracleString(m["alg"]); !ok || alg != "EdDSA" {
		return errors.New("alg")
	}
	if raw, ok := m["typ"]; ok {
		if typ, ok := oracleString(raw); !ok || typ != "JWT" {
			return errors.New("typ")
		}
	}
	if raw, ok := m["kid"]; ok {
		kid, ok := oracleString(raw)
		if !ok || !oracleIdentity(kid) {
			return errors.New("kid")
		}
		r.kid, r.hasKID = kid, true
	}
	return nil
}

var integerRE = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)

func oracleClaims(b []byte, c *Claims) error {
	m, err := oracleObject(b)
	if err != nil {
		return err
	}
	for _, k := range []string{"iss", "sub", "aud", "iat", "exp", "jti", "trust_domain", "cnf"} {
		if _, ok := m[k]; !ok {
			return errors.New("missing " + k)
		}
	}
	var ok [5]bool
	c.Issuer, ok[0] = oracleString(m["iss"])
	c.Subject, ok[1] = oracleString(m["sub"])
	c.JTI, ok[2] = oracleString(m["jti"])
	c.TrustDomain, ok[3] = oracleString(m["trust_domain"])
	c.Audience, ok[4] = oracleString(m["aud"])
	if len(m["aud"]) > 0 && m["aud"][0] == '[' {
		var auds []json.RawMessage
		if json.Unmarshal(m["aud"], &auds) != nil || len(auds) != 1 {
			return errors.New("aud array")
		}
		c.Audience, ok[4] = oracleString(auds[0])
	}
	for i, s := range []string{c.Issuer, c.Subject, c.JTI, c.TrustDomain, c.Audience} {
		if !ok[i] || !oracleIdentity(s) {
			return errors.New("string claim")
		}
	}
	if len(c.JTI) > 256 {
		return errors.New("jti too long")
	}
	var err1, err2 error
	c.IssuedAt, err1 = oracleInt(m["iat"])
	c.ExpiresAt, err2 = oracleInt(m["exp"])
	if err1 != nil || err2 != nil || c.IssuedAt <= 0 || c.ExpiresAt <= c.IssuedAt {
		return errors.New("iat/exp")
	}

	cnf, err := oracleObject(m["cnf"])
	if err != nil {
		return err
	}
	for _, k := range []string{"kid", "key_binding", "public_key_b64url"} {
		if _, ok := cnf[k]; !ok {
			return errors.New("missing cnf." + k)
		}
	}
	var okKID, okKB, okPK bool
	c.CnfKID, okKID = oracleString(cnf["kid"])
	kb, okKB := oracleString(cnf["key_binding"])
	c.KeyBinding, okKB = signerclass.Parse(kb)
	c.PublicKeyB64, okPK = oracleString(cnf["public_key_b64url"])
	if !okKID || !okKB || !okPK {
		return errors.New("cnf member")
	}
	pk, err := base64.RawURLEncoding.DecodeString(c.PublicKeyB64)
	if err != nil || len(pk) != 32 || base64.RawURLEncoding.EncodeToString(pk) != c.PublicKeyB64 {
		return errors.New("public key")
	}
	c.PublicKey = pk

	if raw, present := m["ctx"]; present {
		ctx, err := oracleObject(raw)
		if err != nil {
			return err
		}
		c.Ctx = new(Context)
		for k, dst := range map[string]*string{"actor_type": &c.Ctx.ActorType, "purpose": &c.Ctx.Purpose, "tool_name": &c.Ctx.ToolName, "workflow_id": &c.Ctx.WorkflowID} {
			if raw, present := ctx[k]; present {
				var ok bool
				if *dst, ok = oracleString(raw); !ok {
					return errors.New("ctx member")
				}
			}
		}
		if raw, present := ctx["max_txn_value"]; present {
			c.Ctx.HasMaxTxnValue = true
			switch {
			case raw[0] == '"':
				c.Ctx.MaxTxnValue, _ = oracleString(raw)
				c.Ctx.MaxTxnValueIsString = true
			case raw[0] == '-' || '0' <= raw[0] && raw[0] <= '9':
				c.Ctx.MaxTxnValue = string(raw)
			default:
				return errors.New("max_txn_value")
			}
		}
	}
	if raw, present := m["provenance"]; present {
		prov, err := oracleObject(raw)
		if err != nil {
			return err
		}
		c.Provenance = new(Provenance)
		for k, dst := range map[string]*string{"profile": &c.Provenance.Profile, "spiffe_id": &c.Provenance.SPIFFEID, "spiffe_trust_domain": &c.Provenance.SPIFFETrustDomain, "posture": &c.Provenance.Posture} {
			if raw, present := prov[k]; present {
				var ok bool
				if *dst, ok = oracleString(raw); !ok {
					return errors.New("provenance member")
				}
			}
		}
	}
	return nil
}

// oracleObject checks b as strict JSON and decodes a top-level object into
// its members, each raw and trimmed.
func oracleObject(b []byte) (map[string]json.RawMessage, error) {
	if err := oracleStrictJSON(b); err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if t := bytes.TrimSpace(b); len(t) == 0 || t[0] != '{' {
		return nil, errors.New("not an object")
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for k, v := range m {
		m[k] = bytes.TrimSpace(v)
	}
	return m, nil
}

func oracleString(raw json.RawMessage) (string, bool) {
	var s string
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func oracleIdentity(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

func oracleInt(raw json.RawMessage) (int64, error) {
	if !integerRE.Match(raw) {
		return 0, errors.New("not an integer")
	}
	return strconv.ParseInt(string(raw), 10, 64)
}

// oracleStrictJSON checks what encoding/json lets through: UTF-8, lone
// surrogate escapes, duplicate names (after unescaping) in any object, and
// nesting deeper than 32.
func oracleStrictJSON(b []byte) error {
	if !json.Valid(b) || !utf8.Valid(b) {
		return errors.New("invalid JSON")
	}
	if loneSurrogate(b) {
		return errors.New("lone surrogate")
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	type frame struct {
		object, wantKey bool
		names           map[string]bool
	}
	var stack []frame
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
			if name, ok := tok.(string); ok {
				if stack[n-1].names[name] {
					return errors.New("duplicate name")
				}
				stack[n-1].names[name] = true
				stack[n-1].wantKey = false
				continue
			}
		}
		if n := len(stack); n > 0 && stack[n-1].object {
			// A value, or the start of one, was read: after it (and after its
			// own members, for a container) comes a name again.
			stack[n-1].wantKey = true
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{object: true, wantKey: true, names: map[string]bool{}})
		case json.Delim('['):
			stack = append(stack, frame{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 32 {
			return errors.New("too deep")
		}
	}
}

// loneSurrogate reports whether valid JSON b has a \u escape of a surrogate
// that is not part of a high-low pair.
func loneSurrogate(b []byte) bool {
	inString := false
	for i := 0; i < len(b); i++ {
		switch {
		case !inString:
			inString = b[i] == '"'
		case b[i] == '"':
			inString = false
		case b[i] == '\\':
			if b[i+1] != 'u' {
				i++
				continue
			}
			v, _ := strconv.ParseUint(string(b[i+2:i+6]), 16, 32)
			i += 5
			switch {
			case 0xdc00 <= v && v <= 0xdfff:
				return true
			case 0xd800 <= v && v <= 0xdbff:
				if i+6 >= len(b) || b[i+1] != '\\' || b[i+2] != 'u' {
					return true
				}
				lo, _ := strconv.ParseUint(string(b[i+3:i+7]), 16, 32)
				if lo < 0xdc00 || lo > 0xdfff {
					return true
				}
				i += 6
			}
		}
	}
	return false
}
