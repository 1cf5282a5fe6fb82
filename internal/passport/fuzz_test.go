package passport

import (
	"crypto/ed25519"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var updateCorpus = flag.Bool("update", false, "rewrite the committed fuzz seed corpora under testdata/fuzz")

// seedTokens are the differential fuzz seeds: the DERIVED token, tokens
// minted with varied claims, and mutations of them.
func seedTokens() []string {
	key := testKey()
	p := func(old, new string) string { return strings.Replace(basePayload, old, new, 1) }
	seeds := []string{derivedToken}
	for _, hp := range seedHeaderPayloads() {
		seeds = append(seeds, mint(key, hp[0], hp[1]))
	}
	valid := mint(key, baseHeader, basePayload)
	seeds = append(seeds,
		valid+"==",
		valid[:len(valid)-1]+"h",
		strings.Replace(valid, ".", ".\n", 1),
		mint(key, `{"alg":"EdDSA","nonce":1}`, basePayload),
		mint(key, `{"alg":"EdDSA","x":1e400}`, basePayload),
		mint(key, baseHeader, p(`"iss"`, `"x":1e400,"iss"`)),
	)
	return seeds
}

// seedHeaderPayloads are header and payload texts for minted seeds.
func seedHeaderPayloads() [][2]string {
	p := func(old, new string) string { return strings.Replace(basePayload, old, new, 1) }
	return [][2]string{
		{baseHeader, basePayload},
		{`{"alg":"EdDSA"}`, basePayload},
		{`{"alg":"none"}`, basePayload},
		{`{"alg":"EdDSA","kid":null}`, basePayload},
		{`{"alg":"EdDSA","crit":["b64"],"b64":false}`, basePayload},
		{`{"alg":"EdDSA","alg":"EdDSA"}`, basePayload},
		{`{"alg":"Ed\u0044SA","typ":"JWT"}`, basePayload},
		{baseHeader, p(`"aud":"orders-api"`, `"aud":["orders-api"]`)},
		{baseHeader, p(`"aud":"orders-api"`, `"aud":["a","b"]`)},
		{baseHeader, p(`"jti"`, `"ctx":{"tool_name":"t","max_txn_value":1e2},"provenance":{"posture":"p"},"jti"`)},
		{baseHeader, p(`"jti"`, `"ctx":{"max_txn_value":"1000.00"},"jti"`)},
		{baseHeader, p(`"sub":"spiffe://example.local/workload/orders"`, `"sub":"\ud83d\ude00\u00e9\/"`)},
		{baseHeader, p(`"iss"`, `"iSS":1,"ISS":2,"iss"`)},
		{baseHeader, p(`1740000000`, `1740000000.0`)},
		{baseHeader, p(`"iss"`, `"x":[[[{"a":{"a":1}}]]],"iss"`)},
		{baseHeader, p(`"kid":"A6EH`, `"kid":"x","KID":"A6EH`)},
	}
}

func FuzzParseVsGoJose(f *testing.F) {
	for _, s := range seedTokens() {
		f.Add(s)
	}
	pub := testKey().Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, s string) { compareWithOracle(t, s, pub) })
}

// FuzzSignedVsGoJose signs arbitrary header and payload texts, so that the
// comparison reaches the claims with a valid signature.
func FuzzSignedVsGoJose(f *testing.F) {
	for _, hp := range seedHeaderPayloads() {
		f.Add(hp[0], hp[1])
	}
	key := testKey()
	pub := key.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, header, payload string) {
		compareWithOracle(t, mint(key, header, payload), pub)
	})
}

func compareWithOracle(t *testing.T, s string, pub ed25519.PublicKey) {
	t.Helper()
	tok, err := Parse(s)
	want, wantErr := oracleParse(s, pub)
	switch {
	case err != nil && wantErr != nil:
		if tok != nil {
			t.Fatalf("Parse returned a token and %v", err)
		}
		return
	case err != nil:
		t.Fatalf("Parse(%q) = %v; the oracle accepts it", s, err)
	case wantErr != nil:
		t.Fatalf("Parse(%q) accepts; the oracle refuses: %v", s, wantErr)
	}
	if !reflect.DeepEqual(tok.Claims, want.claims) {
		t.Fatalf("Parse(%q).Claims = %s\noracle: %s", s, dumpClaims(tok.Claims), dumpClaims(want.claims))
	}
	if tok.KID != want.kid || tok.HasKID != want.hasKID {
		t.Fatalf("Parse(%q) kid = %q, %v; oracle %q, %v", s, tok.KID, tok.HasKID, want.kid, want.hasKID)
	}
	if got := tok.VerifySignature(pub); got != want.verified {
		t.Fatalf("VerifySignature(%q) = %v; oracle %v", s, got, want.verified)
	}
}

func dumpClaims(c Claims) string {
	s := fmt.Sprintf("%+v", c)
	if c.Ctx != nil {
		s += fmt.Sprintf(" ctx=%+v", *c.Ctx)
	}
	if c.Provenance != nil {
		s += fmt.Sprintf(" provenance=%+v", *c.Provenance)
	}
	return s
}

// FuzzParse: Parse never panics, and what it accepts is consistent.
func FuzzParse(f *testing.F) {
	for _, s := range seedTokens() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := Parse(string(b))
		if err != nil {
			if tok != nil {
				t.Fatal("Parse returned a token and an error")
			}
			return
		}
		c := tok.Claims
		if len(c.PublicKey) != ed25519.PublicKeySize || c.IssuedAt <= 0 || c.ExpiresAt <= c.IssuedAt ||
			c.Issuer == "" || c.Subject == "" || c.Audience == "" || c.JTI == "" || len(c.JTI) > maxJTIBytes ||
			c.TrustDomain == "" || !c.KeyBinding.Valid() || (tok.HasKID && tok.KID == "") {
			t.Fatalf("Parse accepted inconsistent claims %s", dumpClaims(c))
		}
		tok.VerifySignature(c.PublicKey)
		tok.VerifySignature(c.PublicKey[:31])
	})
}

// TestWriteSeedCorpus rewrites testdata/fuzz/<target>/ from the seeds with
// -update, so the committed corpora stay reviewable in a diff.
func TestWriteSeedCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("corpus files are rewritten only with -update")
	}
	write := func(target string, i int, lines ...string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := "go test fuzz v1\n" + strings.Join(lines, "\n") + "\n"
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range seedTokens() {
		write("FuzzParseVsGoJose", i, fmt.Sprintf("string(%q)", s))
		write("FuzzParse", i, fmt.Sprintf("[]byte(%q)", s))
	}
	for i, hp := range seedHeaderPayloads() {
		write("FuzzSignedVsGoJose", i, fmt.Sprintf("string(%q)", hp[0]), fmt.Sprintf("string(%q)", hp[1]))
	}
}
