package e2e

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/tpcluster/tpcluster/internal/signer"
)

// Hand-made passports for the JWS rows. The caller-side signer only
// writes honest tokens; these change one thing each and are signed for
// real, so the only fault a verifier can find is the one the row names.

const stdHeader = `{"alg":"EdDSA","kid":"caller-1","typ":"JWT"}`

// payload is the claims MintPassport writes for o, signed by k's cnf.
func payload(k *signer.Key, o *signer.PassportOptions) string {
	iat := o.IssuedAt.Unix()
	return fmt.Sprintf(`{"iss":%q,"sub":%q,"aud":%q,"iat":%d,"exp":%d,"jti":"jti-hostile-%d","trust_domain":%q,`+
		`"cnf":{"kid":%q,"public_key_b64url":%q,"key_binding":"software"}}`,
		o.Issuer, o.Subject, o.Audience, iat, iat+int64(o.TTL.Seconds()), o.IssuedAt.UnixNano(), o.TrustDomain,
		k.PublicKeyB64(), k.PublicKeyB64())
}

func b64s(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// jwsBy signs header.payload with k and returns the compact token.
func jwsBy(k *signer.Key, header, payload string) string {
	in := b64s(header) + "." + b64s(payload)
	sig := ed25519.Sign(ed25519.NewKeyFromSeed(k.Seed()), []byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// crafted returns a passport maker: header and an edit of the payload (both
// may be empty for the standard ones), signed by the caller's key, or by
// the intruder's key when evil is set.
func crafted(header string, edit func(p string) string, evil bool) func(s *suite, o *signer.PassportOptions) (string, *signer.Key) {
	return func(s *suite, o *signer.PassportOptions) (string, *signer.Key) {
		k := s.w.caller
		if evil {
			k = s.evil
		}
		if header == "" {
			header = stdHeader
		}
		p := payload(k, o)
		if edit != nil {
			p = edit(p)
		}
		return jwsBy(k, header, p), k
	}
}

// rep is a payload edit replacing the first old with new.
func rep(old, new string) func(string) string {
	return func(p string) string { return strings.Replace(p, old, new, 1) }
}

// authz edits the sent passport after the request was signed with the
// honest one: the transcript binds jti, iat, aud and the class, not the
// token's bytes, so the proof still verifies and the token's own fault is
// the only one.
func (r hreq) authz(f func(tok string) string) hreq {
	return r.fields(func(fs []kv) []kv {
		for i := range fs {
			if fs[i].name == "Authorization" {
				fs[i].value = "Bearer " + f(strings.TrimPrefix(fs[i].value, "Bearer "))
			}
		}
		return fs
	})
}
