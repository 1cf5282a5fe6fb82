package passport

import (
	"strings"

	"github.com/tpcluster/tpcluster/internal/signerclass"
)

// maxJTIBytes caps jti (SPEC §2 [ours]); it becomes a transcript line and a
// ledger key.
const maxJTIBytes = 256

// A field is a string Parse keeps. Its decoded content is a span of the
// decode buffer until kept.assign copies every span into one string.
type field uint8

const (
	fKID field = iota // protected header kid
	fIss
	fSub
	fAud
	fJTI
	fTrustDomain
	fCnfKID
	fPublicKey
	fActorType
	fPurpose
	fToolName
	fWorkflowID
	fMaxTxnValue
	fProfile
	fSPIFFEID
	fSPIFFETrustDomain
	fPosture
	nFields
)

// kept collects the spans of the strings Parse keeps, so that they cost one
// allocation together.
type kept struct {
	span            [nFields]struct{ start, end uint16 }
	hasCtx, hasProv bool
}

func (k *kept) set(f field, start, end int) {
	k.span[f].start, k.span[f].end = uint16(start), uint16(end)
}

func (k *kept) bytes(buf []byte, f field) []byte {
	return buf[k.span[f].start:k.span[f].end]
}

// assign copies the kept spans of buf into one string and points t's fields
// into it and into t's own backing storage.
func (k *kept) assign(t *Token, buf []byte) {
	total := 0
	for _, sp := range k.span {
		total += int(sp.end - sp.start)
	}
	var b strings.Builder
	b.Grow(total)
	for _, sp := range k.span {
		b.Write(buf[sp.start:sp.end])
	}
	all := b.String()
	var str [nFields]string
	off := 0
	for f, sp := range k.span {
		n := int(sp.end - sp.start)
		str[f] = all[off : off+n]
		off += n
	}
	t.KID = str[fKID]
	c := &t.Claims
	c.Issuer, c.Subject, c.Audience = str[fIss], str[fSub], str[fAud]
	c.JTI, c.TrustDomain, c.CnfKID = str[fJTI], str[fTrustDomain], str[fCnfKID]
	c.PublicKeyB64, c.PublicKey = str[fPublicKey], t.pub[:]
	if k.hasCtx {
		t.ctx.ActorType, t.ctx.Purpose = str[fActorType], str[fPurpose]
		t.ctx.ToolName, t.ctx.WorkflowID = str[fToolName], str[fWorkflowID]
		t.ctx.MaxTxnValue = str[fMaxTxnValue]
		c.Ctx = &t.ctx
	}
	if k.hasProv {
		t.prov = Provenance{str[fProfile], str[fSPIFFEID], str[fSPIFFETrustDomain], str[fPosture]}
		c.Provenance = &t.prov
	}
}

// identity reads a string member that names something: non-empty and free of
// ASCII control characters [ours: these strings become transcript lines,
// ledger keys and upstream header values, where a line break or NUL could
// make two different values read alike].
func (s *scanner) identity(k *kept, f field, what string) error {
	start, end, err := s.string()
	if err == errNotString {
		return malformed(what + " is not a string")
	}
	if err != nil {
		return err
	}
	if start == end {
		return malformed(what + " is empty")
	}
	for _, c := range s.buf[start:end] {
		if c < 0x20 || c == 0x7f {
			return malformed(what + " holds a control character")
		}
	}
	k.set(f, start, end)
	return nil
}

// text reads a string member kept as is.
func (s *scanner) text(k *kept, f field, what string) error {
	start, end, err := s.string()
	if err == errNotString {
		return malformed(what + " is not a string")
	}
	if err != nil {
		return err
	}
	k.set(f, start, end)
	return nil
}

// parseHeader reads the protected header (SPEC §2). Only alg, typ and kid
// are read; other members are validated and ignored, except those that would
// let the token choose its own key or change how it is verified.
func parseHeader(s *scanner, k *kept, t *Token) error {
	o, err := s.beginObject(1)
	if err != nil {
		return err
	}
	hasAlg := false
	for {
		start, end, ok, err := s.next(&o)
		if err != nil || !ok {
			if err == nil && !hasAlg {
				err = malformed("no alg")
			}
			if err != nil {
				return err
			}
			return s.end()
		}
		switch member := string(s.buf[start:end]); member {
		case "alg":
			// SPEC §2: the algorithm is only checked, never chosen by the token.
			vs, ve, err := s.string()
			if err != nil || string(s.buf[vs:ve]) != "EdDSA" {
				return malformed("alg is not EdDSA")
			}
			hasAlg = true
		case "typ":
			vs, ve, err := s.string()
			if err != nil || string(s.buf[vs:ve]) != "JWT" {
				return malformed("typ is not JWT")
			}
		case "kid":
			if err := s.identity(k, fKID, "kid"); err != nil {
				return err
			}
			t.HasKID = true
		case "crit", "jku", "x5u", "jwk", "x5c", "b64":
			// SPEC §2 refuses crit, jku, x5u, jwk and x5c [ours]: no key from the
			// token, no extension we would ignore. b64 (RFC 7797) is refused too
			// [ours]: it changes what the signature covers.
			return malformed("refused member " + member)
		default:
			if err := s.skipValue(2); err != nil {
				return err
			}
		}
	}
}

// Required claims, as bits.
const (
	cIss = 1 << iota
	cSub
	cAud
	cIat
	cExp
	cJTI
	cTrustDomain
	cCnf
	cAll = 1<<iota - 1
)

var claimNames = [...]string{"iss", "sub", "aud", "iat", "exp", "jti", "trust_domain", "cnf"}

// parsePayload reads the claims (SPEC §2, §5.1). Unknown claims are
// validated and ignored.
func parsePayload(s *scanner, t *Token, k *kept) error {
	o, err := s.beginObject(1)
	if err != nil {
		return err
	}
	c := &t.Claims
	seen := 0
	for {
		start, end, ok, err := s.next(&o)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		switch string(s.buf[start:end]) {
		case "iss":
			err, seen = s.identity(k, fIss, "iss"), seen|cIss
		case "sub":
			err, seen = s.identity(k, fSub, "sub"), seen|cSub
		case "aud":
			err, seen = s.audience(k), seen|cAud
		case "iat":
			c.IssuedAt, err = s.int64()
			seen |= cIat
		case "exp":
			c.ExpiresAt, err = s.int64()
			seen |= cExp
		case "jti":
			err, seen = s.identity(k, fJTI, "jti"), seen|cJTI
		case "trust_domain":
			err, seen = s.identity(k, fTrustDomain, "trust_domain"), seen|cTrustDomain
		case "cnf":
			err, seen = s.cnf(t, k), seen|cCnf
		case "ctx":
			err, k.hasCtx = s.ctx(t, k), true
		case "provenance":
			err, k.hasProv = s.provenance(k), true
		default:
			err = s.skipValue(2)
		}
		if err != nil {
			return err
		}
	}
	if err := s.end(); err != nil {
		return err
	}
	if seen != cAll {
		for i, n := range claimNames {
			if seen&(1<<i) == 0 {
				return malformed("missing claim " + n)
			}
		}
	}
	switch {
	case c.IssuedAt <= 0:
		return malformed("iat is not positive")
	case c.ExpiresAt <= c.IssuedAt:
		return malformed("exp is not after iat")
	case k.span[fJTI].end-k.span[fJTI].start > maxJTIBytes:
		return malformed("jti longer than 256 bytes")
	}
	return nil
}

// audience reads aud: a string, or an array of exactly one string (SPEC §2
// [ours: multi-audience passports are refused]).
func (s *scanner) audience(k *kept) error {
	if s.peek() != '[' {
		return s.identity(k, fAud, "aud")
	}
	s.pos++
	if err := s.identity(k, fAud, "aud element"); err != nil {
		return err
	}
	if s.peek() != ']' {
		return malformed("aud array does not have exactly one element")
	}
	s.pos++
	return nil
}

// cnf reads the confirmation claim: {kid, key_binding, public_key_b64url}.
func (s *scanner) cnf(t *Token, k *kept) error {
	o, err := s.beginObject(2)
	if err != nil {
		return malformed("cnf is not an object")
	}
	const (
		hasKID = 1 << iota
		hasBinding
		hasKey
	)
	seen := 0
	for {
		start, end, ok, err := s.next(&o)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		switch string(s.buf[start:end]) {
		case "kid":
			// Opaque and never used for lookup (SPEC §2), so any string will do.
			if err := s.text(k, fCnfKID, "cnf.kid"); err != nil {
				return err
			}
			seen |= hasKID
		case "key_binding":
			vs, ve, err := s.string()
			if err != nil {
				return malformed("cnf.key_binding is not a string")
			}
			cl, ok := signerclass.Parse(string(s.buf[vs:ve]))
			if !ok {
				return malformed("cnf.key_binding is not a signer class")
			}
			t.Claims.KeyBinding = cl
			seen |= hasBinding
		case "public_key_b64url":
			vs, ve, err := s.string()
			if err != nil {
				return malformed("cnf.public_key_b64url is not a string")
			}
			if n, ok := decodeB64(t.pub[:], s.buf[vs:ve]); !ok || n != len(t.pub) {
				return malformed("cnf.public_key_b64url is not canonical base64url of 32 bytes")
			}
			k.set(fPublicKey, vs, ve)
			seen |= hasKey
		default:
			if err := s.skipValue(3); err != nil {
				return err
			}
		}
	}
	switch {
	case seen&hasKID == 0:
		return malformed("missing claim cnf.kid")
	case seen&hasBinding == 0:
		return malformed("missing claim cnf.key_binding")
	case seen&hasKey == 0:
		return malformed("missing claim cnf.public_key_b64url")
	}
	return nil
}

// ctx reads the optional context claim (SPEC §5.1 [ours]).
func (s *scanner) ctx(t *Token, k *kept) error {
	o, err := s.beginObject(2)
	if err != nil {
		return malformed("ctx is not an object")
	}
	for {
		start, end, ok, err := s.next(&o)
		if err != nil || !ok {
			return err
		}
		switch string(s.buf[start:end]) {
		case "actor_type":
			err = s.text(k, fActorType, "ctx.actor_type")
		case "purpose":
			err = s.text(k, fPurpose, "ctx.purpose")
		case "tool_name":
			err = s.text(k, fToolName, "ctx.tool_name")
		case "workflow_id":
			err = s.text(k, fWorkflowID, "ctx.workflow_id")
		case "max_txn_value":
			err = s.maxTxnValue(t, k)
		default:
			err = s.skipValue(3)
		}
		if err != nil {
			return err
		}
	}
}

// maxTxnValue keeps ctx.max_txn_value as sent: a number's literal text or a
// string's content. Whether it is a decimal is for the policy (SPEC §5.1).
func (s *scanner) maxTxnValue(t *Token, k *kept) error {
	t.ctx.HasMaxTxnValue = true
	switch c := s.peek(); {
	case c == '"':
		t.ctx.MaxTxnValueIsString = true
		return s.text(k, fMaxTxnValue, "ctx.max_txn_value")
	case c == '-' || '0' <= c && c <= '9':
		start, end, _, err := s.number()
		if err != nil {
			return err
		}
		k.set(fMaxTxnValue, start, end)
		return nil
	}
	return malformed("ctx.max_txn_value is not a number or string")
}

// provenance reads the optional provenance claim (SPEC §5.1 [ours]).
func (s *scanner) provenance(k *kept) error {
	o, err := s.beginObject(2)
	if err != nil {
		return malformed("provenance is not an object")
	}
	for {
		start, end, ok, err := s.next(&o)
		if err != nil || !ok {
			return err
		}
		switch string(s.buf[start:end]) {
		case "profile":
			err = s.text(k, fProfile, "provenance.profile")
		case "spiffe_id":
			err = s.text(k, fSPIFFEID, "provenance.spiffe_id")
		case "spiffe_trust_domain":
			err = s.text(k, fSPIFFETrustDomain, "provenance.spiffe_trust_domain")
		case "posture":
			err = s.text(k, fPosture, "provenance.posture")
		default:
			err = s.skipValue(3)
		}
		if err != nil {
			return err
		}
	}
}
