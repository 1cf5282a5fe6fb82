package passport

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/tpcluster/tpcluster/internal/conformance"
	"github.com/tpcluster/tpcluster/internal/signerclass"
)

// passportVector is the shape of a passport-v1 vector.
type passportVector struct {
	VectorID       string          `json:"vector_id"`
	Claims         json.RawMessage `json:"claims"`
	RequiredClaims []string        `json:"required_claims"`
}

// TestConformancePassportClaims runs the manifest's passport-v1 vectors: the
// vector's claims validate under SPEC §2, and removing any entry of its
// required_claims is passport_malformed.
func TestConformancePassportClaims(t *testing.T) {
	conformance.Run(t, "passport-v1", testPassportClaims)
}

func testPassportClaims(t *testing.T, v passportVector) {
	if len(v.RequiredClaims) == 0 {
		t.Fatal("vector lists no required claims")
	}
	_, key, err := ed25519.GenerateKey(nil) // any key: Parse does not look keys up
	if err != nil {
		t.Fatal(err)
	}
	t.Run("valid", func(t *testing.T) {
		tok, err := Parse(mint(key, baseHeader, string(v.Claims)))
		if err != nil {
			t.Fatalf("Parse(vector claims) = %v", err)
		}
		var c struct {
			Iss, Sub, Aud, Jti string
			Iat, Exp           int64
			TrustDomain        string `json:"trust_domain"`
			Cnf                struct {
				KID        string `json:"kid"`
				KeyBinding string `json:"key_binding"`
				PublicKey  string `json:"public_key_b64url"`
			}
		}
		if err := json.Unmarshal(v.Claims, &c); err != nil {
			t.Fatal(err)
		}
		pub, _ := base64.RawURLEncoding.DecodeString(c.Cnf.PublicKey)
		kb, _ := signerclass.Parse(c.Cnf.KeyBinding)
		want := Claims{
			Issuer: c.Iss, Subject: c.Sub, Audience: c.Aud, IssuedAt: c.Iat, ExpiresAt: c.Exp,
			JTI: c.Jti, TrustDomain: c.TrustDomain, CnfKID: c.Cnf.KID, KeyBinding: kb,
			PublicKey: pub, PublicKeyB64: c.Cnf.PublicKey,
		}
		if !reflect.DeepEqual(tok.Claims, want) {
			t.Errorf("Parse(vector claims).Claims = %+v, want %+v", tok.Claims, want)
		}
		if !tok.VerifySignature(key.Public().(ed25519.PublicKey)) {
			t.Error("VerifySignature = false, want true")
		}
	})
	for _, claim := range v.RequiredClaims {
		t.Run("without "+claim, func(t *testing.T) {
			_, err := Parse(mint(key, baseHeader, withoutClaim(t, string(v.Claims), claim)))
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("Parse(claims without %s) = %v, want ErrMalformed", claim, err)
			}
		})
	}
}

// withoutClaim returns the claims JSON without the member at the dotted path.
func withoutClaim(tb testing.TB, claims, path string) string {
	tb.Helper()
	d := json.NewDecoder(strings.NewReader(claims))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		tb.Fatal(err)
	}
	obj := m
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := obj[p].(map[string]any)
		if !ok {
			tb.Fatalf("claims have no object at %s", p)
		}
		obj = next
	}
	last := parts[len(parts)-1]
	if _, ok := obj[last]; !ok {
		tb.Fatalf("claims have no %s", path)
	}
	delete(obj, last)
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(m); err != nil {
		tb.Fatal(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// TestDerivedConstants: derivedToken and derivedPublicKey, which many
// tests and benchmarks use as constants, are the DERIVED example's.
func TestDerivedConstants(t *testing.T) {
	d := conformance.LoadDerived(t)
	if d.PassportToken != derivedToken {
		t.Errorf("derivedToken differs from the DERIVED example's passport_token:\n%s\n%s", derivedToken, d.PassportToken)
	}
	if d.IssuerKey.PublicKeyB64URL != derivedPublicKey {
		t.Errorf("derivedPublicKey = %s, the DERIVED example's issuer key is %s", derivedPublicKey, d.IssuerKey.PublicKeyB64URL)
	}
}
