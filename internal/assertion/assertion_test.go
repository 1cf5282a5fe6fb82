package assertion

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
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

// TestListedKeys: with assertion_keys in the trust material, the JWKS is
// that list, and the node signs only while its key is listed active.
func TestListedKeys(t *testing.T) {
	own, _ := keyfile.Generate("node-1")
	next, _ := keyfile.Generate("node-1-next")
	var listed []*bundle.AssertionKey
	m, err := New(Config{Issuer: "i", Key: own, Listed: func() []*bundle.AssertionKey { return listed }})
	if err != nil {
		t.Fatal(err)
	}
	req := &Request{Spec: &bundle.BackendAssertion{Audience: "b", TTL: time.Second}}
	// Nothing listed: the flag-configured set, and minting works.
	if _, err := m.Mint(req); err != nil {
		t.Errorf("no list: %v", err)
	}
	for _, tc := range []struct {
		name    string
		list    []*bundle.AssertionKey
		mintErr string // "" means it mints
	}{
		{"own key next", []*bundle.AssertionKey{{KID: "node-1", PublicKey: own.Public().Key, Status: bundle.AssertionKeyNext}}, "not active"},
		{"own key retired", []*bundle.AssertionKey{{KID: "node-1", PublicKey: own.Public().Key, Status: bundle.AssertionKeyRetired}}, "not active"},
		{"own key absent", []*bundle.AssertionKey{{KID: "node-1-next", PublicKey: next.Public().Key, Status: bundle.AssertionKeyActive}}, "not in the trust material"},
		{"own kid, other key", []*bundle.AssertionKey{{KID: "node-1", PublicKey: next.Public().Key, Status: bundle.AssertionKeyActive}}, "another public key"},
		{"own key active, next published", []*bundle.AssertionKey{
			{KID: "node-1", PublicKey: own.Public().Key, Status: bundle.AssertionKeyActive},
			{KID: "node-1-next", PublicKey: next.Public().Key, Status: bundle.AssertionKeyNext}}, ""},
	} {
		listed = tc.list
		_, err := m.Mint(req)
		if (tc.mintErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.mintErr)) {
			t.Errorf("%s: Mint err = %v, want %q", tc.name, err, tc.mintErr)
		}
		doc := string(m.JWKSDocument())
		for _, k := range tc.list {
			if !strings.Contains(doc, `"kid":"`+k.KID+`"`) {
				t.Errorf("%s: JWKS lacks listed %s: %s", tc.name, k.KID, doc)
			}
		}
		if strings.Count(doc, `"kid"`) != len(tc.list) {
			t.Errorf("%s: JWKS has keys beyond the list: %s", tc.name, doc)
		}
	}
}

// TestRotateWithoutRestart: a node holding its old and new key (repeated
// --assertion-key) signs with whichever the trust material lists active,
// so the switch is a new trust material, not a restart.
func TestRotateWithoutRestart(t *testing.T) {
	old, _ := keyfile.Generate("node-1-a")
	next, _ := keyfile.Generate("node-1-b")
	var listed []*bundle.AssertionKey
	m, err := New(Config{Issuer: "i", Key: old, MoreKeys: []*keyfile.PrivateKey{next},
		Listed: func() []*bundle.AssertionKey { return listed }})
	if err != nil {
		t.Fatal(err)
	}
	entry := func(k *keyfile.PrivateKey, s bundle.AssertionKeyStatus) *bundle.AssertionKey {
		return &bundle.AssertionKey{KID: k.KID(), PublicKey: k.Public().Key, Status: s}
	}
	req := &Request{Spec: &bundle.BackendAssertion{Audience: "b", TTL: time.Second}}
	for _, tc := range []struct {
		name    string
		list    []*bundle.AssertionKey
		wantKID string // "" means Mint refuses
		wantErr string
	}{
		{"nothing listed: the first key", nil, "node-1-a", ""},
		{"old active, new next", []*bundle.AssertionKey{entry(old, bundle.AssertionKeyActive), entry(next, bundle.AssertionKeyNext)}, "node-1-a", ""},
		{"new active, old retired", []*bundle.AssertionKey{entry(old, bundle.AssertionKeyRetired), entry(next, bundle.AssertionKeyActive)}, "node-1-b", ""},
		{"old gone, new active", []*bundle.AssertionKey{entry(next, bundle.AssertionKeyActive)}, "node-1-b", ""},
		{"both next", []*bundle.AssertionKey{entry(old, bundle.AssertionKeyNext), entry(next, bundle.AssertionKeyNext)}, "", `key "node-1-a" is not active`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			listed = tc.list
			got, err := m.Mint(req)
			if tc.wantKID == "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Mint err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			h, _, _ := strings.Cut(got.Token, ".")
			hb, _ := base64.RawURLEncoding.DecodeString(h)
			if got.KID != tc.wantKID || !strings.Contains(string(hb), `"kid":"`+tc.wantKID+`"`) {
				t.Errorf("Mint kid = %q, header %s, want %q", got.KID, hb, tc.wantKID)
			}
		})
	}
	// Without a list, the JWKS holds both of the node's keys.
	listed = nil
	if doc := string(m.JWKSDocument()); !strings.Contains(doc, `"kid":"node-1-a"`) || !strings.Contains(doc, `"kid":"node-1-b"`) {
		t.Errorf("JWKS without a list = %s, want both node keys", doc)
	}
	if _, err := New(Config{Issuer: "i", Key: old, MoreKeys: []*keyfile.PrivateKey{nil}}); err == nil {
		t.Error("New with a nil MoreKeys entry succeeded")
	}
}

// TestSetKeys: a node that re-reads its key directory swaps its keys while
// requests mint. Each assertion is signed by the key its header names (one
// consistent set per mint, checked under -race), the JWKS follows the set,
// and a refused set leaves the keys in use.
func TestSetKeys(t *testing.T) {
	old, _ := keyfile.Generate("node-1-a")
	next, _ := keyfile.Generate("node-1-b")
	m, err := New(Config{Issuer: "i", Key: old})
	if err != nil {
		t.Fatal(err)
	}
	pub := map[string]ed25519.PublicKey{old.KID(): old.Public().Key, next.KID(): next.Public().Key}
	req := &Request{Spec: &bundle.BackendAssertion{Audience: "b", TTL: time.Second}}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for range 300 {
				got, err := m.Mint(req)
				if err != nil {
					errs <- err
					return
				}
				parts := strings.Split(got.Token, ".")
				hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
				sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
				var h struct{ Kid string }
				_ = json.Unmarshal(hb, &h)
				if h.Kid != got.KID || !ed25519.Verify(pub[h.Kid], []byte(parts[0]+"."+parts[1]), sig) {
					errs <- fmt.Errorf("assertion with header kid %q, Minted.KID %q: not signed by that key", h.Kid, got.KID)
					return
				}
			}
		})
	}
	for i := range 200 {
		keys := []*keyfile.PrivateKey{old, next}
		if i%2 == 1 {
			keys = []*keyfile.PrivateKey{next}
		}
		if err := m.SetKeys(keys); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if m.KID() != "node-1-b" || len(m.Keys()) != 1 {
		t.Errorf("after SetKeys([new]): KID %q, %d keys, want node-1-b alone", m.KID(), len(m.Keys()))
	}
	if doc := string(m.JWKSDocument()); strings.Contains(doc, `"kid":"node-1-a"`) || !strings.Contains(doc, `"kid":"node-1-b"`) {
		t.Errorf("JWKS after SetKeys([new]) = %s, want node-1-b only", doc)
	}
	forged, _ := keyfile.Generate("node-1-b")
	for _, bad := range [][]*keyfile.PrivateKey{nil, {nil}, {next, forged}} {
		if err := m.SetKeys(bad); err == nil {
			t.Errorf("SetKeys(%d keys, refusable) succeeded", len(bad))
		}
	}
	if m.KID() != "node-1-b" || len(m.Keys()) != 1 {
		t.Errorf("after refused SetKeys: KID %q, %d keys, want node-1-b alone kept", m.KID(), len(m.Keys()))
	}
}
