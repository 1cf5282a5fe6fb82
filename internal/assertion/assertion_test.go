package assertion

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
)

func TestJWKS(t *testing.T) {
	a, _ := keyfile.Generate("a")
	b, _ := keyfile.Generate("b")
	doc, err := JWKS([]*keyfile.PublicKey{a.Public(), b.Public(), a.Public()})
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 || set.Keys[0]["kid"] != "a" || set.Keys[1]["kid"] != "b" {
		t.Fatalf("set = %s, want a then b once each", doc)
	}
	k := set.Keys[0]
	if k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["alg"] != "EdDSA" || k["use"] != "sig" ||
		k["x"] != base64.RawURLEncoding.EncodeToString(a.Public().Key) {
		t.Errorf("key a = %v", k)
	}
	forged, _ := keyfile.Generate("a")
	if _, err := JWKS([]*keyfile.PublicKey{a.Public(), forged.Public()}); err == nil || !strings.Contains(err.Error(), `kid "a"`) {
		t.Errorf("two keys with kid a: err = %v", err)
	}
}

func TestMintRefuses(t *testing.T) {
	k, _ := keyfile.Generate("k")
	if _, err := New(Config{Key: k}); err == nil {
		t.Error("New without an issuer succeeded")
	}
	if _, err := New(Config{Issuer: "i"}); err == nil {
		t.Error("New without a key succeeded")
	}
	m, err := New(Config{Issuer: "i", Key: k, Now: func() time.Time { return time.Unix(1000, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Mint(&Request{}); err == nil {
		t.Error("Mint without a backend audience succeeded")
	}
	// A TTL above the cap (a bundle cannot say it; a caller could) is capped.
	got, err := m.Mint(&Request{Spec: &bundle.BackendAssertion{Audience: "b", TTL: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := base64.RawURLEncoding.DecodeString(strings.Split(got.Token, ".")[1])
	var c claims
	if err := json.Unmarshal(p, &c); err != nil {
		t.Fatal(err)
	}
	if c.ExpiresAt-c.IssuedAt != 60 || c.Audience != "b" || c.Issuer != "i" {
		t.Errorf("claims = %+v, want a 60 s lifetime", c)
	}
	h, _ := base64.RawURLEncoding.DecodeString(strings.Split(got.Token, ".")[0])
	if string(h) != `{"alg":"EdDSA","kid":"k","typ":"tp-assertion+jwt"}` {
		t.Errorf("header = %s", h)
	}
}
