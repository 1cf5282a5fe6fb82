package bundle

import (
	"strings"
	"testing"

	"github.com/tpcluster/tpcluster/internal/conformance"
)

// fuzzSeeds are the vector and the test documents.
func fuzzSeeds(f *testing.F) [][]byte {
	k := testKey(f, 1, "fuzz-key")
	seeds := [][]byte{
		[]byte(basePolicy),
		signedPolicy(f, NewSigningKey(k)),
		[]byte(trustDoc(f)),
		[]byte(strings.Replace(trustDoc(f), `"status":"retired"`, `"status":"retired","key_binding":"hardware_local","max_key_binding":"remote_kms"`, 1)),
	}
	for _, vec := range conformance.Vectors(f, "bundle-v1") {
		var v sourceRulesVector
		vec.Load(f, &v)
		seeds = append(seeds, v.PolicyBundle)
	}
	return seeds
}

// FuzzParsePolicy: no input panics, and whatever loads is consistent: it
// loads again identically, every route resolves to itself by id, literal
// routes resolve by their own template, and signing it (canonical form)
// yields a document that loads signed with the same routes.
func FuzzParsePolicy(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, "GET", "/v1/orders/search")
	}
	k := testKey(f, 1, "fuzz-key")
	sk, vk := NewSigningKey(k), NewVerifyKey(k.Public())
	f.Fuzz(func(t *testing.T, data []byte, method, path string) {
		o := Options{AllowUnsigned: true, Keys: []VerifyKey{vk}, ModTime: testModTime}
		p, err := ParsePolicy(data, o)
		if err != nil {
			return
		}
		if got, want := p.Resolve(method, path), resolveLinear(p, method, path); got != want {
			t.Fatalf("Resolve(%q, %q) = %v, brute force gives %v", method, path, got, want)
		}
		for _, r := range p.Routes {
			if p.RouteByID(r.ID) != r {
				t.Fatalf("RouteByID(%q) is not the route", r.ID)
			}
			if r.tmpl.kind == tmplLiteral && p.Resolve(r.Method, r.PathTemplate) != r {
				t.Fatalf("literal route %q does not resolve by its own template", r.ID)
			}
			if len(r.Sources) == 0 || !r.RequiredKeyBinding.Valid() {
				t.Fatalf("route %q loaded without sources or key binding", r.ID)
			}
			for _, s := range r.Sources {
				if (s.SubjectExact == "") == (s.SubjectPrefix == "") {
					t.Fatalf("route %q: source without exactly one subject selector", r.ID)
				}
			}
		}
		again, err := ParsePolicy(data, o)
		if err != nil || again.SHA256 != p.SHA256 || len(again.Routes) != len(p.Routes) {
			t.Fatalf("second load differs: %v", err)
		}
		signed, err := Sign(data, sk, "fuzz")
		if err != nil {
			t.Fatalf("Sign(accepted document) = %v", err)
		}
		sp, err := ParsePolicy(signed, Options{Keys: []VerifyKey{vk}, ModTime: testModTime})
		if err == nil {
			if len(sp.Routes) != len(p.Routes) || sp.Sequence != p.Sequence || !sp.IssuedAt.Equal(p.IssuedAt) {
				t.Fatalf("re-signed document differs: %d routes seq %d, want %d seq %d", len(sp.Routes), sp.Sequence, len(p.Routes), p.Sequence)
			}
			for i, r := range sp.Routes {
				if r.ID != p.Routes[i].ID || r.PathTemplate != p.Routes[i].PathTemplate || len(r.Sources) != len(p.Routes[i].Sources) {
					t.Fatalf("re-signed route %d differs", i)
				}
			}
		} else if hasSeqAndTime(data) {
			// Documents with sequence and issued_at stay loadable once
			// re-signed; others lack what a signed document must carry.
			t.Fatalf("re-signed document does not load: %v", err)
		}
	})
}

func hasSeqAndTime(data []byte) bool {
	top, err := parseTree(data)
	if err != nil {
		return false
	}
	_, s := top["sequence"]
	_, a := top["issued_at"]
	return s && a
}

// FuzzParseTrustMaterial: no input panics; whatever loads has keys that
// PassportKey can find by kid, and loads again after re-signing.
func FuzzParseTrustMaterial(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Add([]byte(trustWithAuditNodes(f, `[{"node_id":"node-a:8081","public_key_b64url":"`+b64(f, 20)+`","status":"active"}]`)))
	k := testKey(f, 1, "fuzz-key")
	sk, vk := NewSigningKey(k), NewVerifyKey(k.Public())
	f.Fuzz(func(t *testing.T, data []byte) {
		o := Options{AllowUnsigned: true, Keys: []VerifyKey{vk}, ModTime: testModTime}
		tm, err := ParseTrustMaterial(data, o)
		if err != nil {
			return
		}
		keys := map[string]bool{}
		for _, n := range tm.AuditNodes {
			if n.NodeID == "" || len(n.PublicKey) != 32 || keys[n.PublicKeyB64] {
				t.Fatalf("audit node %+v accepted (empty id, wrong key length or a key listed twice)", n)
			}
			keys[n.PublicKeyB64] = true
		}
		for name, is := range tm.Issuers {
			if name != is.Issuer {
				t.Fatalf("issuer %q filed under %q", is.Issuer, name)
			}
			for _, key := range is.Keys {
				if len(key.PublicKey) != 32 {
					t.Fatalf("key %q has %d bytes", key.KID, len(key.PublicKey))
				}
				// A loaded key always vouches for a real class (software
				// when absent) and its cap is a real class or none.
				if !key.KeyBinding.Valid() || key.MaxKeyBinding != 0 && !key.MaxKeyBinding.Valid() {
					t.Fatalf("key %q loaded with key_binding %d, max_key_binding %d", key.KID, key.KeyBinding, key.MaxKeyBinding)
				}
				now := key.NotBefore
				if got := tm.PassportKey(name, key.KID, true, "", now); (got == key) != key.Usable(now) {
					t.Fatalf("PassportKey(%q, %q) = %v, usable %v", name, key.KID, got, key.Usable(now))
				}
			}
		}
		signed, err := Sign(data, sk, "fuzz")
		if err != nil {
			t.Fatalf("Sign(accepted document) = %v", err)
		}
		st, err := ParseTrustMaterial(signed, Options{Keys: []VerifyKey{vk}})
		if err != nil && hasSeqAndTime(data) {
			t.Fatalf("re-signed document does not load: %v", err)
		}
		if err == nil && (len(st.Issuers) != len(tm.Issuers) || st.Sequence != tm.Sequence) {
			t.Fatal("re-signed document differs")
		}
	})
}
