package passport

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/tpcluster/tpcluster/internal/signerclass"
)

func TestParseDerived(t *testing.T) {
	tok, err := Parse(derivedToken)
	if err != nil {
		t.Fatalf("Parse(DERIVED) = %v", err)
	}
	pub, _ := base64.RawURLEncoding.DecodeString(derivedPublicKey)
	want := Claims{
		Issuer:       "https://issuer.example",
		Subject:      "spiffe://example.local/workload/orders",
		Audience:     "orders-api",
		IssuedAt:     1740000000,
		ExpiresAt:    1740000300,
		JTI:          "passport-v1-minimal-001",
		TrustDomain:  "example.local",
		CnfKID:       derivedPublicKey,
		KeyBinding:   signerclass.Software,
		PublicKey:    pub,
		PublicKeyB64: derivedPublicKey,
	}
	if !reflect.DeepEqual(tok.Claims, want) {
		t.Errorf("Parse(DERIVED).Claims = %+v, want %+v", tok.Claims, want)
	}
	if tok.KID != "proof-key-1" || !tok.HasKID {
		t.Errorf("Parse(DERIVED) kid = %q, %v, want proof-key-1, true", tok.KID, tok.HasKID)
	}

	if !tok.VerifySignature(pub) {
		t.Error("VerifySignature(DERIVED issuer key) = false, want true")
	}
	other, _, _ := ed25519.GenerateKey(nil)
	if tok.VerifySignature(other) {
		t.Error("VerifySignature(another key) = true, want false")
	}
	for _, n := range []int{0, 31, 33, 64} {
		if tok.VerifySignature(make([]byte, n)) {
			t.Errorf("VerifySignature(%d-byte key) = true, want false", n)
		}
	}
	if tok.VerifySignature(nil) {
		t.Error("VerifySignature(nil) = true, want false")
	}
}

func TestParseAccepts(t *testing.T) {
	key := testKey()
	p := func(old, new string) string { return strings.Replace(basePayload, old, new, 1) }
	tests := []struct {
		name, header, payload string
		check                 func(*Token) string
	}{
		{"derived shape", baseHeader, basePayload, nil},
		{"no kid", `{"alg":"EdDSA"}`, basePayload, func(t *Token) string {
			return ifNot(!t.HasKID && t.KID == "", "HasKID")
		}},
		{"unknown header member", `{"alg":"EdDSA","x":{"y":[1,2,{"z":null}]},"nonce":5}`, basePayload, nil},
		{"aud one-element array", baseHeader, p(`"aud":"orders-api"`, `"aud":[ "orders-api" ]`), func(t *Token) string {
			return ifNot(t.Claims.Audience == "orders-api", "Audience")
		}},
		{"white space", " {\"alg\" : \"EdDSA\"}\r\n", "\t" + strings.ReplaceAll(basePayload, ",", " ,\n") + " ", nil},
		{"escapes", baseHeader, p(`"sub":"spiffe://example.local/workload/orders"`, `"sub":"sp\u0069ffe:\/\/x\u00e9\ud83d\ude00\"\\"`), func(t *Token) string {
			return ifNot(t.Claims.Subject == "spiffe://x\u00e9\U0001F600\"\\", "Subject "+t.Claims.Subject)
		}},
		{"jti 256 bytes", baseHeader, p(`"passport-v1-minimal-001"`, `"`+strings.Repeat("j", 256)+`"`), nil},
		{"unknown claims", baseHeader, p(`{"iss"`, `{"x":[[],{},"",0,-1.5e-3,true,false,null],"iss"`), nil},
		{"ctx and provenance", baseHeader, p(`"jti"`, `"ctx":{"actor_type":"agent","purpose":"p","tool_name":"t","workflow_id":"w","max_txn_value":1000.50,"extra":1},"provenance":{"profile":"pr","spiffe_id":"spiffe://a/b","spiffe_trust_domain":"a","posture":"ok"},"jti"`), func(t *Token) string {
			want := Context{ActorType: "agent", Purpose: "p", ToolName: "t", WorkflowID: "w", MaxTxnValue: "1000.50", HasMaxTxnValue: true}
			wantProv := Provenance{"pr", "spiffe://a/b", "a", "ok"}
			return ifNot(t.Claims.Ctx != nil && *t.Claims.Ctx == want && t.Claims.Provenance != nil && *t.Claims.Provenance == wantProv, "ctx/provenance")
		}},
		{"ctx max_txn_value string", baseHeader, p(`"jti"`, `"ctx":{"max_txn_value":"1000.00"},"jti"`), func(t *Token) string {
			return ifNot(t.Claims.Ctx != nil && t.Claims.Ctx.MaxTxnValue == "1000.00" && t.Claims.Ctx.MaxTxnValueIsString && t.Claims.Provenance == nil, "ctx")
		}},
		{"empty ctx", baseHeader, p(`"jti"`, `"ctx":{},"jti"`), func(t *Token) string {
			return ifNot(t.Claims.Ctx != nil && *t.Claims.Ctx == Context{}, "ctx")
		}},
		{"nesting at the limit", baseHeader, p(`{"iss"`, `{"x":`+strings.Repeat("[", maxDepth-1)+strings.Repeat("]", maxDepth-1)+`,"iss"`), nil},
		{"many members", baseHeader, p(`{"iss"`, `{`+manyMembers(200)+`,"cnf2":{`+manyMembers(100)+`},"iss"`), nil},
		{"large token", baseHeader, p(`{"iss"`, `{"x":"`+strings.Repeat("x", 5000)+`","iss"`), nil},
		{"max int64 exp", baseHeader, p(`1740000300`, `9223372036854775807`), nil},
		{"remote_kms", baseHeader, p(`"software"`, `"remote_kms"`), func(t *Token) string {
			return ifNot(t.Claims.KeyBinding == signerclass.RemoteKMS, "KeyBinding")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := Parse(mint(key, tt.header, tt.payload))
			if err != nil {
				t.Fatalf("Parse = %v, want success", err)
			}
			if tt.check != nil {
				if bad := tt.check(tok); bad != "" {
					t.Errorf("Parse: wrong %s", bad)
				}
			}
			if !tok.VerifySignature(key.Public().(ed25519.PublicKey)) {
				t.Error("VerifySignature = false, want true")
			}
		})
	}
}

func ifNot(ok bool, what string) string {
	if ok {
		return ""
	}
	return what
}

func TestParseRefuses(t *testing.T) {
	key := testKey()
	p := func(old, new string) string {
		if !strings.Contains(basePayload, old) {
			panic("test payload lacks " + old)
		}
		return strings.Replace(basePayload, old, new, 1)
	}
	h := func(header string) string { return mint(key, header, basePayload) }
	pl := func(payload string) string { return mint(key, baseHeader, payload) }
	valid := mint(key, baseHeader, basePayload)
	dot1 := strings.IndexByte(valid, '.')
	dot2 := strings.LastIndexByte(valid, '.')
	hSeg, pSeg, sSeg := valid[:dot1], valid[dot1+1:dot2], valid[dot2+1:]

	tests := []struct{ name, token string }{
		// Segments and base64url.
		{"empty", ""},
		{"two segments", hSeg + "." + pSeg},
		{"four segments", valid + ".x"},
		{"empty header segment", "." + pSeg + "." + sSeg},
		{"empty payload segment", hSeg + ".." + sSeg},
		{"empty signature", hSeg + "." + pSeg + "."},
		{"signature 63 bytes", hSeg + "." + pSeg + "." + b64(make([]byte, 63))},
		{"signature 65 bytes", hSeg + "." + pSeg + "." + b64(make([]byte, 65))},
		{"signature padded", valid + "=="},
		{"signature non-canonical bits", valid[:len(valid)-1] + "h"},
		{"signature std alphabet", hSeg + "." + pSeg + "." + strings.NewReplacer("-", "+", "_", "/").Replace(sSeg)},
		{"header padded", base64.URLEncoding.EncodeToString([]byte(`{"alg":"EdDSA" }`)) + "." + pSeg + "." + sSeg},
		{"header non-canonical bits", nonCanonical(hSeg) + "." + pSeg + "." + sSeg},
		{"payload line break", hSeg + "." + pSeg[:10] + "\n" + pSeg[10:] + "." + sSeg},
		{"payload space", hSeg + "." + pSeg[:10] + " " + pSeg[10:] + "." + sSeg},
		{"payload length mod 4 is 1", hSeg + "." + pSeg + "AAAA"[:(5-len(pSeg)%4)%4] + "." + sSeg},
		{"too long", mint(key, baseHeader, p(`"iss"`, `"x":"`+strings.Repeat("a", MaxTokenBytes)+`","iss"`))},

		// Header.
		{"alg none", h(`{"alg":"none"}`)},
		{"alg HS256", h(`{"alg":"HS256","kid":"k"}`)},
		{"alg RS256", h(`{"alg":"RS256"}`)},
		{"alg ES256", h(`{"alg":"ES256"}`)},
		{"alg Ed25519", h(`{"alg":"Ed25519"}`)},
		{"alg lower case", h(`{"alg":"eddsa"}`)},
		{"alg trailing space", h(`{"alg":"EdDSA "}`)},
		{"alg missing", h(`{"kid":"k","typ":"JWT"}`)},
		{"alg null", h(`{"alg":null}`)},
		{"alg array", h(`{"alg":["EdDSA"]}`)},
		{"typ lower case", h(`{"alg":"EdDSA","typ":"jwt"}`)},
		{"typ JOSE", h(`{"alg":"EdDSA","typ":"JOSE"}`)},
		{"typ number", h(`{"alg":"EdDSA","typ":1}`)},
		{"kid number", h(`{"alg":"EdDSA","kid":1}`)},
		{"kid null", h(`{"alg":"EdDSA","kid":null}`)},
		{"kid empty", h(`{"alg":"EdDSA","kid":""}`)},
		{"crit", h(`{"alg":"EdDSA","crit":["exp"],"exp":1}`)},
		{"jku", h(`{"alg":"EdDSA","jku":"https://x.example/jwks"}`)},
		{"x5u", h(`{"alg":"EdDSA","x5u":"https://x.example/c"}`)},
		{"jwk", h(`{"alg":"EdDSA","jwk":{"kty":"OKP","crv":"Ed25519","x":"` + derivedPublicKey + `"}}`)},
		{"x5c", h(`{"alg":"EdDSA","x5c":[]}`)},
		{"b64", h(`{"alg":"EdDSA","b64":true}`)},
		{"header duplicate alg", h(`{"alg":"EdDSA","alg":"EdDSA"}`)},
		{"header duplicate escaped", h(`{"alg":"EdDSA","\u0061lg":"EdDSA"}`)},
		{"header duplicate nested", h(`{"alg":"EdDSA","x":{"a":1,"a":2}}`)},
		{"header array", h(`[{"alg":"EdDSA"}]`)},
		{"header trailing data", h(`{"alg":"EdDSA"}{}`)},
		{"header not JSON", h(`alg=EdDSA`)},

		// Payload structure.
		{"payload array", pl(`[` + basePayload + `]`)},
		{"payload trailing data", pl(basePayload + `x`)},
		{"payload trailing comma", pl(p(`}}`, `},}`))},
		{"duplicate top-level", pl(p(`{"iss"`, `{"iss":"a","iss"`))},
		{"duplicate top-level escaped", pl(p(`{"iss"`, `{"\u0069ss":"a","iss"`))},
		{"duplicate in cnf", pl(p(`"key_binding"`, `"kid":"x","key_binding"`))},
		{"duplicate in unknown", pl(p(`{"iss"`, `{"x":[{"a":1,"b":{"c":1,"c":1}}],"iss"`))},
		{"duplicate after many members", pl(p(`{"iss"`, `{`+manyMembers(100)+`,"m7":1,"iss"`))},
		{"duplicate nested after many members", pl(p(`{"iss"`, `{"o":{`+manyMembers(100)+`,"m99":0},"iss"`))},
		{"duplicate ctx", pl(p(`"jti"`, `"ctx":{},"ctx":{},"jti"`))},
		{"too deep", pl(p(`{"iss"`, `{"x":`+strings.Repeat("[", maxDepth)+strings.Repeat("]", maxDepth)+`,"iss"`))},
		{"lone high surrogate", pl(p(`"orders-api"`, `"a\ud83d"`))},
		{"lone low surrogate", pl(p(`"orders-api"`, `"a\ude00b"`))},
		{"surrogate then non-surrogate", pl(p(`"orders-api"`, `"\ud83d\u0041"`))},
		{"bad escape", pl(p(`"orders-api"`, `"a\x"`))},
		{"short unicode escape", pl(p(`"orders-api"`, `"\u12"`))},
		{"raw control character", pl(p(`"orders-api"`, "\"a\tb\""))},
		{"invalid UTF-8", pl(p(`"orders-api"`, "\"a\xffb\""))},
		{"UTF-8 surrogate", pl(p(`"orders-api"`, "\"a\xed\xa0\x80\""))},
		{"bad number", pl(p(`{"iss"`, `{"x":01,"iss"`))},
		{"bad literal", pl(p(`{"iss"`, `{"x":nul,"iss"`))},

		// Claim types and values.
		{"iat string", pl(p(`1740000000`, `"1740000000"`))},
		{"iat float", pl(p(`1740000000`, `1740000000.0`))},
		{"iat exponent", pl(p(`1740000000`, `1.74e9`))},
		{"iat bool", pl(p(`1740000000`, `true`))},
		{"iat null", pl(p(`1740000000`, `null`))},
		{"iat zero", pl(p(`1740000000`, `0`))},
		{"iat negative", pl(p(`1740000000`, `-1`))},
		{"iat overflow", pl(p(`1740000000`, `9223372036854775808`))},
		{"exp equals iat", pl(p(`1740000300`, `1740000000`))},
		{"exp before iat", pl(p(`1740000300`, `1739999999`))},
		{"exp float", pl(p(`1740000300`, `1740000300.5`))},
		{"aud number", pl(p(`"orders-api"`, `1`))},
		{"aud empty array", pl(p(`"orders-api"`, `[]`))},
		{"aud two elements", pl(p(`"orders-api"`, `["orders-api","other"]`))},
		{"aud two equal elements", pl(p(`"orders-api"`, `["orders-api","orders-api"]`))},
		{"aud number element", pl(p(`"orders-api"`, `[1]`))},
		{"aud nested array", pl(p(`"orders-api"`, `[["orders-api"]]`))},
		{"aud empty", pl(p(`"orders-api"`, `""`))},
		{"aud null", pl(p(`"orders-api"`, `null`))},
		{"iss empty", pl(p(`"https://issuer.example"`, `""`))},
		{"iss number", pl(p(`"https://issuer.example"`, `1`))},
		{"iss line break", pl(p(`"https://issuer.example"`, `"https://issuer.example\n"`))},
		{"sub empty", pl(p(`"spiffe://example.local/workload/orders"`, `""`))},
		{"sub NUL", pl(p(`"spiffe://example.local/workload/orders"`, `"a\u0000b"`))},
		{"trust_domain empty", pl(p(`"example.local"`, `""`))},
		{"jti empty", pl(p(`"passport-v1-minimal-001"`, `""`))},
		{"jti 257 bytes", pl(p(`"passport-v1-minimal-001"`, `"`+strings.Repeat("j", 257)+`"`))},
		{"jti object", pl(p(`"passport-v1-minimal-001"`, `{}`))},
		{"cnf not object", pl(p(`"cnf":{`, `"cnf":[{`) + "]")},
		{"cnf.kid number", pl(p(`"kid":"A6EH`, `"kid":1,"x":"A6EH`))},
		{"key_binding unknown", pl(p(`"software"`, `"tpm"`))},
		{"key_binding case", pl(p(`"software"`, `"Software"`))},
		{"public key 31 bytes", pl(p(`"public_key_b64url":"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"`, `"public_key_b64url":"`+b64(make([]byte, 31))+`"`))},
		{"public key 33 bytes", pl(p(`"public_key_b64url":"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"`, `"public_key_b64url":"`+b64(make([]byte, 33))+`"`))},
		{"public key padded", pl(p(`"public_key_b64url":"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"`, `"public_key_b64url":"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="`))},
		{"public key non-canonical", pl(p(`"public_key_b64url":"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"`, `"public_key_b64url":"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbh"`))},
		{"public key std alphabet", pl(p(`"public_key_b64url":"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"`, `"public_key_b64url":"A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"`))},
		{"public key number", pl(p(`"public_key_b64url":"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"`, `"public_key_b64url":32`))},
		{"ctx not object", pl(p(`"jti"`, `"ctx":"x","jti"`))},
		{"ctx null", pl(p(`"jti"`, `"ctx":null,"jti"`))},
		{"ctx.tool_name number", pl(p(`"jti"`, `"ctx":{"tool_name":1},"jti"`))},
		{"ctx.max_txn_value bool", pl(p(`"jti"`, `"ctx":{"max_txn_value":true},"jti"`))},
		{"ctx.max_txn_value bad number", pl(p(`"jti"`, `"ctx":{"max_txn_value":1.},"jti"`))},
		{"provenance array", pl(p(`"jti"`, `"provenance":[],"jti"`))},
		{"provenance.posture null", pl(p(`"jti"`, `"provenance":{"posture":null},"jti"`))},
	}
	for _, claim := range []string{"iss", "sub", "aud", "iat", "exp", "jti", "trust_domain", "cnf", "cnf.kid", "cnf.key_binding", "cnf.public_key_b64url"} {
		tests = append(tests, struct{ name, token string }{"missing " + claim, pl(withoutClaim(t, basePayload, claim))})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := Parse(tt.token)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse = %v, %v; want ErrMalformed", tok, err)
			}
			t.Log(err)
			if tok != nil {
				t.Errorf("Parse returned a token with error %v", err)
			}
		})
	}
}

// nonCanonical sets the unused low bits of seg's last character, which must
// carry some (its length is not a multiple of 4).
func nonCanonical(seg string) string {
	if len(seg)%4 == 0 {
		panic("segment has no unused bits")
	}
	last := seg[len(seg)-1]
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	return seg[:len(seg)-1] + string(alphabet[strings.IndexByte(alphabet, last)|1])
}

// TestParseErrorsDoNotEcho checks that errors never carry the input.
func TestParseErrorsDoNotEcho(t *testing.T) {
	key := testKey()
	secret := "SECRET-INPUT-xyz"
	for _, tok := range []string{
		secret,
		secret + "." + secret + "." + secret,
		mint(key, `{"alg":"`+secret+`"}`, basePayload),
		mint(key, `{"alg":"EdDSA","`+secret+`":1,"`+secret+`":2}`, basePayload),
		mint(key, baseHeader, strings.Replace(basePayload, `"software"`, `"`+secret+`"`, 1)),
	} {
		_, err := Parse(tok)
		if err == nil || strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), b64([]byte(secret))[:8]) {
			t.Errorf("Parse error = %v; want an error without the input", err)
		}
	}
}

func TestTokenRedacted(t *testing.T) {
	tok, err := Parse(derivedToken)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := tok.MarshalText()
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%+v", tok), fmt.Sprintf("%#v", tok), fmt.Sprintf("%s", tok), string(text)} {
		if strings.Contains(s, "proof-key-1") || strings.Contains(s, "issuer.example") || strings.Contains(s, derivedToken[:20]) {
			t.Errorf("formatted token %q shows its content", s)
		}
	}
}

// manyMembers returns n distinct members "m0":0 ... for an object's body.
func manyMembers(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"m%d":%d`, i, i)
	}
	return b.String()
}
