package passport

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// goJoseClaims is the claim set as a go-jose user would decode it.
type goJoseClaims struct {
	Iss         string `json:"iss"`
	Sub         string `json:"sub"`
	Aud         string `json:"aud"`
	Iat         int64  `json:"iat"`
	Exp         int64  `json:"exp"`
	Jti         string `json:"jti"`
	TrustDomain string `json:"trust_domain"`
	Cnf         struct {
		KID        string `json:"kid"`
		KeyBinding string `json:"key_binding"`
		PublicKey  string `json:"public_key_b64url"`
	} `json:"cnf"`
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(derivedToken); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseGoJose is the oracle's path: go-jose parse and a claims
// decode, without any of the SPEC checks Parse adds.
func BenchmarkParseGoJose(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		jws, err := jose.ParseSignedCompact(derivedToken, []jose.SignatureAlgorithm{jose.EdDSA})
		if err != nil {
			b.Fatal(err)
		}
		var c goJoseClaims
		if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseVerify(b *testing.B) {
	pub := testKey().Public().(ed25519.PublicKey)
	b.ReportAllocs()
	for b.Loop() {
		tok, err := Parse(derivedToken)
		if err != nil || !tok.VerifySignature(pub) {
			b.Fatal("DERIVED token refused")
		}
	}
}

func BenchmarkGoJoseParseVerify(b *testing.B) {
	pub := testKey().Public().(ed25519.PublicKey)
	b.ReportAllocs()
	for b.Loop() {
		jws, err := jose.ParseSignedCompact(derivedToken, []jose.SignatureAlgorithm{jose.EdDSA})
		if err != nil {
			b.Fatal(err)
		}
		payload, err := jws.Verify(pub)
		if err != nil {
			b.Fatal(err)
		}
		var c goJoseClaims
		if err := json.Unmarshal(payload, &c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseRefused measures a token refused late (bad key binding), the
// cost an attacker can impose without a valid signature.
func BenchmarkParseRefused(b *testing.B) {
	tok := mint(testKey(), baseHeader, basePayload[:len(basePayload)-len(`"software"}}`)]+`"unknown"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(tok); err == nil {
			b.Fatal("accepted")
		}
	}
}

// TestParseAllocations pins the allocation count of the hot path, as
// crypto/ed25519's TestAllocations does: the token and one string for all
// kept text.
func TestParseAllocations(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("allocation counts differ under coverage and the race detector")
	}
	if n := testing.AllocsPerRun(100, func() { Parse(derivedToken) }); n > 2 {
		t.Errorf("Parse allocates %v times, want at most 2", n)
	}
}

// BenchmarkParseWorstCase measures the largest duplicate search a token can
// ask for: one object with as many distinct members as 8 KiB can carry.
func BenchmarkParseWorstCase(b *testing.B) {
	var body strings.Builder
	for i := 0; body.Len() < 5500; i++ {
		fmt.Fprintf(&body, `"%x":0,`, i)
	}
	tok := mint(testKey(), baseHeader, `{`+body.String()+basePayload[1:])
	if len(tok) > MaxTokenBytes {
		b.Fatalf("token is %d bytes", len(tok))
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(tok); err != nil {
			b.Fatal(err)
		}
	}
}
