package signer

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/conformance"
	"github.com/tpcluster/tpcluster/internal/transcript"
)

func seedKey(t testing.TB) *Key {
	t.Helper()
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i)
	}
	k, err := NewKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// derivedOptions are the DERIVED vector's claims (SPEC, opening section).
func derivedOptions() PassportOptions {
	return PassportOptions{
		Issuer: "https://issuer.example", KID: "proof-key-1",
		Subject: "spiffe://example.local/workload/orders", Audience: "orders-api",
		IssuedAt: time.Unix(1740000000, 0), TTL: 300 * time.Second,
		JTI: "passport-v1-minimal-001", TrustDomain: "example.local",
	}
}

func TestDerivedVector(t *testing.T) {
	vec := conformance.LoadDerived(t)
	k := seedKey(t)
	if hex.EncodeToString(k.Seed()) != vec.SeedHex {
		t.Fatalf("seed = %x, vector says %s", k.Seed(), vec.SeedHex)
	}
	if k.PublicKeyB64() != vec.IssuerKey.PublicKeyB64URL {
		t.Errorf("PublicKeyB64 = %s, want %s", k.PublicKeyB64(), vec.IssuerKey.PublicKeyB64URL)
	}
	tok, err := k.MintPassport(derivedOptions())
	if err != nil {
		t.Fatalf("MintPassport: %v", err)
	}
	if tok != vec.PassportToken {
		t.Errorf("MintPassport =\n%s\nwant\n%s", tok, vec.PassportToken)
	}

	hr := vec.HTTPRequest
	u, err := url.Parse(hr.URL)
	if err != nil {
		t.Fatal(err)
	}
	r := &Request{
		Method: hr.Method, Scheme: u.Scheme, Authority: u.Host, Path: u.EscapedPath(), RawQuery: u.RawQuery,
		Body:    []byte(hr.BodyUTF8),
		Headers: []transcript.Header{{Name: "Content-Type", Value: hr.Headers["Content-Type"]}, {Name: "X-Ignore-Me", Value: hr.Headers["X-Ignore-Me"]}},
		Covered: []string{"Content-Type", "X-TrustPlane-Nonce"},
		RouteID: vec.Expected.RouteID, Nonce: hr.Headers["X-TrustPlane-Nonce"],
	}
	s, err := k.Sign(tok, r)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if got, want := string(s.Canonical), strings.Join(vec.Expected.Lines, "\n"); got != want {
		t.Errorf("canonical lines differ\n--- got\n%s\n--- want\n%s", got, want)
	}
	if got := hex.EncodeToString(s.Digest[:]); got != vec.Expected.TranscriptSHA256 {
		t.Errorf("digest = %s, want %s", got, vec.Expected.TranscriptSHA256)
	}
	if !slices.Equal(s.AllowList, vec.Expected.AllowList) {
		t.Errorf("allow list = %q, want %q", s.AllowList, vec.Expected.AllowList)
	}
	wantOrder := []string{HeaderAuthorization, HeaderNonce, HeaderBodySHA256, HeaderTranscriptSHA256, HeaderProof}
	for i, h := range s.Headers {
		if h.Name != wantOrder[i] {
			t.Errorf("wire header %d = %s, want %s", i, h.Name, wantOrder[i])
		}
		if want := hr.Headers[h.Name]; h.Value != want {
			t.Errorf("%s = %q, want %q", h.Name, h.Value, want)
		}
	}
	if got := s.Headers[4].Value; got != vec.Expected.Proof {
		t.Errorf("proof = %s, want %s", got, vec.Expected.Proof)
	}
}

// TestShapes signs every real-client shape and checks that the verifier's
// candidate search finds exactly the covered set the caller signed, and
// that the proof verifies.
func TestShapes(t *testing.T) {
	k := seedKey(t)
	for _, sh := range Shapes() {
		t.Run(sh.Name, func(t *testing.T) {
			o := derivedOptions()
			tok, err := k.MintPassport(o)
			if err != nil {
				t.Fatal(err)
			}
			s, err := k.Sign(tok, &sh.Request)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			req := Received(sh.Client, &sh.Request, &s)
			m, err := transcript.MatchRequest(req, &transcript.Binding{
				Audience: o.Audience, RouteID: sh.Request.RouteID, JTI: o.JTI, Nonce: s.Nonce,
				IssuedAt: o.IssuedAt.Unix(), KeyBinding: "software",
			}, nil, &s.Digest)
			if err != nil {
				t.Fatalf("MatchRequest(%v) = %v, want a match", req.Header, err)
			}
			if !slices.Equal(m.AllowList, s.AllowList) {
				t.Errorf("MatchRequest allow list = %q, want %q", m.AllowList, s.AllowList)
			}
			proof, err := base64.RawURLEncoding.DecodeString(s.Headers[4].Value)
			if err != nil || !ed25519.Verify(k.PublicKey(), s.Digest[:], proof) {
				t.Errorf("proof does not verify: %v", err)
			}
			if req.BodySHA256 != s.BodySHA256 {
				t.Errorf("body sha256 = %s, sent %s", req.BodySHA256, s.BodySHA256)
			}
		})
	}
}

func TestShapesAddUncoveredHeaders(t *testing.T) {
	// The shapes are only worth testing if the client really adds headers
	// the caller did not cover.
	k := seedKey(t)
	tok, err := k.MintPassport(derivedOptions())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"python-post-no-content-type": {"Content-Type", "User-Agent", "Accept-Encoding"},
		"python-post-idempotency-key": {"User-Agent", "Accept-Encoding"},
		"python-post-gzip":            {"User-Agent", "Accept-Encoding"},
		"raw-x-ignore-me":             {"X-Ignore-Me"},
		"node-fetch-get":              {"Accept", "Accept-Language", "Sec-Fetch-Mode", "User-Agent", "Accept-Encoding"},
	}
	for _, sh := range Shapes() {
		t.Run(sh.Name, func(t *testing.T) {
			s, err := k.Sign(tok, &sh.Request)
			if err != nil {
				t.Fatal(err)
			}
			h := Received(sh.Client, &sh.Request, &s).Header
			for _, name := range want[sh.Name] {
				if _, ok := h[name]; !ok {
					t.Errorf("%s not sent", name)
				}
				if slices.Contains(s.AllowList, strings.ToLower(name)) {
					t.Errorf("%s covered, want it uncovered", name)
				}
			}
		})
	}
}

func TestMintPassportJSON(t *testing.T) {
	k := seedKey(t)
	pub := k.PublicKeyB64()
	cnf := `"cnf":{"kid":"` + pub + `","public_key_b64url":"` + pub + `","key_binding":"software"}`
	tests := []struct {
		name   string
		opts   func(*PassportOptions)
		header string
		claims string
		err    bool
	}{
		{
			name:   "python escapes, ensure_ascii=False",
			opts:   func(o *PassportOptions) { o.Subject = "spiffe://ex/é\u2028\x01\"\\/<>&\t😀"; o.JTI = " j-1 " },
			header: `{"alg":"EdDSA","kid":"proof-key-1","typ":"JWT"}`,
			// json.dumps(claims, separators=(",", ":"), ensure_ascii=False)
			claims: `{"iss":"https://issuer.example","sub":"spiffe://ex/é` + "\u2028" + `\u0001\"\\/<>&\t😀","aud":"orders-api","iat":1740000000,"exp":1740000300,"jti":"j-1","trust_domain":"example.local",` + cnf + `}`,
		},
		{
			name: "no kid, sub-second times truncated",
			opts: func(o *PassportOptions) {
				o.KID = ""
				o.IssuedAt = time.Unix(1740000000, 900e6)
				o.TTL = 300*time.Second + 500*time.Millisecond
			},
			header: `{"alg":"EdDSA","typ":"JWT"}`,
			claims: `{"iss":"https://issuer.example","sub":"spiffe://example.local/workload/orders","aud":"orders-api","iat":1740000000,"exp":1740000300,"jti":"passport-v1-minimal-001","trust_domain":"example.local",` + cnf + `}`,
		},
		{
			name: "ctx and provenance after cnf",
			opts: func(o *PassportOptions) {
				o.KeyBinding = "hardware_local"
				o.Ctx = &Context{ActorType: "service", ToolName: "orders-worker", MaxTxnValue: "1000.00"}
				o.Provenance = &Provenance{Profile: "p", SPIFFEID: "spiffe://example.local/w", SPIFFETrustDomain: "example.local", Posture: "spiffe_svid_verified"}
			},
			header: `{"alg":"EdDSA","kid":"proof-key-1","typ":"JWT"}`,
			claims: `{"iss":"https://issuer.example","sub":"spiffe://example.local/workload/orders","aud":"orders-api","iat":1740000000,"exp":1740000300,"jti":"passport-v1-minimal-001","trust_domain":"example.local",` +
				strings.Replace(cnf, "software", "hardware_local", 1) +
				`,"ctx":{"actor_type":"service","tool_name":"orders-worker","max_txn_value":"1000.00"},"provenance":{"profile":"p","spiffe_id":"spiffe://example.local/w","spiffe_trust_domain":"example.local","posture":"spiffe_svid_verified"}}`,
		},
		{
			name:   "max_txn_value as a number",
			opts:   func(o *PassportOptions) { o.Ctx = &Context{MaxTxnValue: "1000.5", MaxTxnValueIsNumber: true} },
			header: `{"alg":"EdDSA","kid":"proof-key-1","typ":"JWT"}`,
			claims: `{"iss":"https://issuer.example","sub":"spiffe://example.local/workload/orders","aud":"orders-api","iat":1740000000,"exp":1740000300,"jti":"passport-v1-minimal-001","trust_domain":"example.local",` + cnf + `,"ctx":{"max_txn_value":1000.5}}`,
		},
		{
			name:   "signed for another key, as a broker does",
			opts:   func(o *PassportOptions) { o.Cnf = "b3RoZXI"; o.KeyBinding = "remote_kms" },
			header: `{"alg":"EdDSA","kid":"proof-key-1","typ":"JWT"}`,
			claims: `{"iss":"https://issuer.example","sub":"spiffe://example.local/workload/orders","aud":"orders-api","iat":1740000000,"exp":1740000300,"jti":"passport-v1-minimal-001","trust_domain":"example.local",` +
				`"cnf":{"kid":"b3RoZXI","public_key_b64url":"b3RoZXI","key_binding":"remote_kms"}}`,
		},
		{name: "max_txn_value not a number", opts: func(o *PassportOptions) { o.Ctx = &Context{MaxTxnValue: "true", MaxTxnValueIsNumber: true} }, err: true},
		{name: "empty issuer", opts: func(o *PassportOptions) { o.Issuer = " " }, err: true},
		{name: "padded audience", opts: func(o *PassportOptions) { o.Audience = "orders-api " }, err: true},
		{name: "negative ttl", opts: func(o *PassportOptions) { o.TTL = -time.Second }, err: true},
		{name: "invalid UTF-8", opts: func(o *PassportOptions) { o.Subject = "a\xffb" }, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := derivedOptions()
			tt.opts(&o)
			tok, err := k.MintPassport(o)
			if tt.err {
				if err == nil {
					t.Fatalf("MintPassport = %s, want an error", tok)
				}
				return
			}
			if err != nil {
				t.Fatalf("MintPassport: %v", err)
			}
			parts := strings.Split(tok, ".")
			for i, want := range []string{tt.header, tt.claims} {
				got, err := base64.RawURLEncoding.DecodeString(parts[i])
				if err != nil || string(got) != want {
					t.Errorf("part %d =\n%s\nwant\n%s", i, got, want)
				}
			}
			sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
			if !ed25519.Verify(k.PublicKey(), []byte(parts[0]+"."+parts[1]), sig) {
				t.Error("signature does not verify")
			}
		})
	}
}

func TestMintPassportDefaults(t *testing.T) {
	k := seedKey(t)
	o := derivedOptions()
	o.JTI, o.TTL, o.IssuedAt = "", 0, time.Time{}
	before := time.Now().Unix()
	tok, err := k.MintPassport(o)
	if err != nil {
		t.Fatal(err)
	}
	c, err := readClaims(tok)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.jti, "jti-") || len(c.jti) != len("jti-")+22 {
		t.Errorf("jti = %q, want jti- and 22 base64url characters", c.jti)
	}
	if c.issuedAt < before || c.issuedAt > time.Now().Unix() {
		t.Errorf("iat = %d, want about now", c.issuedAt)
	}
	if c.keyBinding != "software" {
		t.Errorf("key_binding = %q, want software", c.keyBinding)
	}
}

func TestSignErrors(t *testing.T) {
	k := seedKey(t)
	tok, err := k.MintPassport(derivedOptions())
	if err != nil {
		t.Fatal(err)
	}
	other, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	base := Request{Method: "POST", Scheme: "https", Authority: "orders.example", Path: "/v1/orders", RouteID: "orders.create"}
	tests := []struct {
		name string
		key  *Key
		tok  string
		req  func(*Request)
	}{
		{name: "another key's passport", key: other, tok: tok},
		{name: "not a JWS", key: k, tok: "abc"},
		{name: "payload not base64url", key: k, tok: "a.!!.c"},
		{name: "payload not JSON", key: k, tok: "a." + base64.RawURLEncoding.EncodeToString([]byte("[")) + ".c"},
		{name: "wire header in headers", key: k, tok: tok, req: func(r *Request) {
			r.Headers = []transcript.Header{{Name: "x-trustplane-proof", Value: "p"}}
		}},
		{name: "covered header absent", key: k, tok: tok, req: func(r *Request) { r.Covered = []string{"x-missing"} }},
		{name: "malformed query", key: k, tok: tok, req: func(r *Request) { r.RawQuery = "a=%zz" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base
			if tt.req != nil {
				tt.req(&r)
			}
			if s, err := tt.key.Sign(tt.tok, &r); err == nil {
				t.Errorf("Sign = %x, want an error", s.Digest)
			}
		})
	}
	t.Run("malformed query wraps", func(t *testing.T) {
		r := base
		r.RawQuery = "%"
		if _, err := k.Sign(tok, &r); !errors.Is(err, transcript.ErrMalformedQuery) {
			t.Errorf("Sign = %v, want %v", err, transcript.ErrMalformedQuery)
		}
	})
}

func TestNewKeySeedLength(t *testing.T) {
	for _, n := range []int{0, 31, 33, 64} {
		if _, err := NewKey(make([]byte, n)); err == nil {
			t.Errorf("NewKey(%d bytes) = nil error", n)
		}
	}
}

func TestKeyRedaction(t *testing.T) {
	k := seedKey(t)
	secrets := []string{hex.EncodeToString(k.Seed()), base64.RawURLEncoding.EncodeToString(k.Seed()), string(k.Seed())}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("key", "key", k)
	for _, out := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s %v %#v", k, k, k, k, *k, *k), logged.String()} {
		if !strings.Contains(out, k.PublicKeyB64()) {
			t.Errorf("%q does not name the public key", out)
		}
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%q leaks the seed", out)
			}
		}
	}
}
