package core

import (
	"encoding/base64"
	"errors"
	"strings"
)

// firstHeader returns the first value of the header name (given in net/http's
// canonical form) and how many values the request carries for it under any
// spelling. Adapters built on net/http canonicalise names, so the scan over
// other spellings runs only for hand-built headers.
func firstHeader(h map[string][]string, canonical string) (string, int) {
	vs := h[canonical]
	n := len(vs)
	first := ""
	if n > 0 {
		first = vs[0]
	}
	for k, v := range h {
		if len(k) == len(canonical) && k != canonical && strings.EqualFold(k, canonical) {
			if n == 0 && len(v) > 0 {
				first = v[0]
			}
			n += len(v)
		}
	}
	return first, n
}

// bearer extracts the passport from an Authorization value: the scheme
// "Bearer" in any case, one space, a non-empty token (SPEC §2).
func bearer(v string) (string, bool) {
	const scheme = "bearer "
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	tok := v[len(scheme):]
	if tok[0] == ' ' {
		return "", false
	}
	return tok, true
}

// proofHeaders are the wire headers of SPEC §3.5 other than Authorization,
// checked for form at step 16.
type proofHeaders struct {
	nonce     string // trimmed
	bodyHex   string
	digestHex string
	digest    [32]byte
	sig       [64]byte
}

// strictB64 refuses padding and non-zero trailing bits, so every signature
// has exactly one accepted spelling.
var strictB64 = base64.RawURLEncoding.Strict()

// readProofHeaders applies step 16: the nonce is non-empty after trimming and
// at most 256 bytes, both digest headers match ^[0-9a-f]{64}$, the proof is
// canonical unpadded base64url of 64 bytes, and none is repeated.
func readProofHeaders(h map[string][]string) (proofHeaders, error) {
	var ph proofHeaders
	nonce, n := firstHeader(h, hdrNonce)
	if n != 1 {
		return ph, errors.New("want exactly one X-TrustPlane-Nonce")
	}
	ph.nonce = trimASCII(nonce)
	if ph.nonce == "" || len(ph.nonce) > 256 {
		return ph, errors.New("X-TrustPlane-Nonce is empty or longer than 256 bytes")
	}
	var m int
	if ph.bodyHex, m = firstHeader(h, hdrBodySHA256); m != 1 || !isLowerHex64(ph.bodyHex) {
		return ph, errors.New("want exactly one X-TrustPlane-Body-SHA256 of 64 lowercase hex digits")
	}
	if ph.digestHex, m = firstHeader(h, hdrTranscript); m != 1 || !isLowerHex64(ph.digestHex) {
		return ph, errors.New("want exactly one X-TrustPlane-Transcript-SHA256 of 64 lowercase hex digits")
	}
	for i := range ph.digest {
		hi, _ := unhex(ph.digestHex[2*i])
		lo, _ := unhex(ph.digestHex[2*i+1])
		ph.digest[i] = hi<<4 | lo
	}
	proof, m := firstHeader(h, hdrProof)
	if m != 1 || len(proof) != 86 {
		return ph, errors.New("want exactly one X-TrustPlane-Proof of 86 base64url characters")
	}
	var src [86]byte // a stack copy: converting the string would allocate
	copy(src[:], proof)
	if k, err := strictB64.Decode(ph.sig[:], src[:]); err != nil || k != 64 {
		return ph, errors.New("X-TrustPlane-Proof is not canonical unpadded base64url")
	}
	return ph, nil
}

func isLowerHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// hexEqual reports whether the lowercase hex text h spells b.
func hexEqual(h string, b []byte) bool {
	const digits = "0123456789abcdef"
	if len(h) != 2*len(b) {
		return false
	}
	for i, c := range b {
		if h[2*i] != digits[c>>4] || h[2*i+1] != digits[c&0xf] {
			return false
		}
	}
	return true
}

// trimASCII removes leading and trailing ASCII whitespace (space, tab, LF,
// VT, FF, CR), the "trimmed" of SPEC §3.2.
func trimASCII(s string) string {
	isSpace := func(c byte) bool { return c == ' ' || ('\t' <= c && c <= '\r') }
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func upperASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'a' <= s[i] && s[i] <= 'z' {
			return strings.ToUpper(s)
		}
	}
	return s
}

func lowerAll(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		if n = strings.ToLower(trimASCII(n)); n != "" {
			out = append(out, n)
		}
	}
	return out
}
