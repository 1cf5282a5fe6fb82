package bundle

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/gowebpki/jcs"
)

func signedPolicy(t testing.TB, k SigningKey) []byte {
	t.Helper()
	out, err := Sign([]byte(basePolicy), k, "https://bundles.example")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSignVerifyRoundTrip(t *testing.T) {
	priv := testKey(t, 1, "bundle-key-1")
	sk, vk := NewSigningKey(priv), NewVerifyKey(priv.Public())
	doc := signedPolicy(t, sk)
	if err := Verify(doc, []VerifyKey{vk}); err != nil {
		t.Fatalf("Verify = %v", err)
	}
	p, err := ParsePolicy(doc, Options{Keys: []VerifyKey{vk}})
	if err != nil {
		t.Fatalf("ParsePolicy(signed) = %v", err)
	}
	if !p.Signed || p.Sequence != 3 || p.IssuedAt.Format("2006-01-02T15:04:05Z") != "2026-11-23T10:00:00Z" {
		t.Errorf("signed policy: Signed %v Sequence %d IssuedAt %v (Sign must not change them)", p.Signed, p.Sequence, p.IssuedAt)
	}
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	by := m["signed_by"].(map[string]any)
	if by["issuer"] != "https://bundles.example" || by["kid"] != "bundle-key-1" || by["alg"] != "EdDSA" {
		t.Errorf("signed_by = %v", by)
	}
	if f := m["signature"].(map[string]any)["format"]; f != "ed25519-jcs-v1" {
		t.Errorf("signature.format = %v", f)
	}
	// Signing a signed document again gives the same bytes (Ed25519 is
	// deterministic and the output is canonical).
	again, err := Sign(doc, sk, "https://bundles.example")
	if err != nil || !bytes.Equal(again, doc) {
		t.Errorf("re-signing changed the document: %v", err)
	}
}

// TestSignedBytesAreJCS checks the signature against jcs.Transform of the
// document without its signature member, computed independently.
func TestSignedBytesAreJCS(t *testing.T) {
	priv := testKey(t, 1, "k1")
	doc := signedPolicy(t, NewSigningKey(priv))
	canon, err := jcs.Transform(doc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(canon, doc) {
		t.Errorf("Sign output is not RFC 8785 canonical:\n got %s\nwant %s", doc, canon)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	var sig struct{ Value string }
	if err := json.Unmarshal(m["signature"], &sig); err != nil {
		t.Fatal(err)
	}
	delete(m, "signature")
	raw, _ := json.Marshal(m)
	msg, err := jcs.Transform(raw)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := base64.RawURLEncoding.DecodeString(sig.Value)
	if !ed25519.Verify(priv.Public().Key, msg, s) {
		t.Errorf("signature does not verify over JCS(document minus signature) = %s", msg)
	}
}

func TestVerifyTamper(t *testing.T) {
	k1, k2 := testKey(t, 1, "k1"), testKey(t, 2, "k2")
	v1, v2 := NewVerifyKey(k1.Public()), NewVerifyKey(k2.Public())
	doc := string(signedPolicy(t, NewSigningKey(k1)))
	tests := []struct {
		name string
		doc  string
		keys []VerifyKey
		want error // nil: valid
		text string
	}{
		{"valid", doc, []VerifyKey{v1}, nil, ""},
		{"rotation: old and new key accepted", doc, []VerifyKey{v2, v1}, nil, ""},
		{"changed member", strings.Replace(doc, `"orders.create"`, `"orders.createx"`, 1), []VerifyKey{v1}, ErrBadSignature, ""},
		{"changed sequence", strings.Replace(doc, `"sequence":3`, `"sequence":4`, 1), []VerifyKey{v1}, ErrBadSignature, ""},
		{"signed_by issuer changed", strings.Replace(doc, `"issuer":"https://bundles.example"`, `"issuer":"https://other.example"`, 1), []VerifyKey{v1}, ErrBadSignature, ""},
		{"signed_by kid changed to other key", strings.Replace(doc, `"kid":"k1"`, `"kid":"k2"`, 1), []VerifyKey{v1, v2}, ErrBadSignature, ""},
		{"unknown kid", doc, []VerifyKey{v2}, ErrUnknownKey, ""},
		{"no keys", doc, nil, ErrUnknownKey, ""},
		{"same kid wrong key", doc, []VerifyKey{{KID: "k1", Key: v2.Key}}, ErrBadSignature, ""},
		{"short key ignored", doc, []VerifyKey{{KID: "k1", Key: v1.Key[:31]}}, ErrUnknownKey, ""},
		{"alg none", strings.Replace(doc, `"alg":"EdDSA"`, `"alg":"none"`, 1), []VerifyKey{v1}, nil, `signed_by.alg: "none" is not "EdDSA"`},
		{"signature removed", strings.Replace(doc, `"signature":{`, `"x_signature":{`, 1), []VerifyKey{v1}, ErrUnsigned, ""},
		{"unsigned-skeleton format", strings.Replace(doc, `"ed25519-jcs-v1"`, `"unsigned-skeleton"`, 1), []VerifyKey{v1}, ErrUnsigned, ""},
		{"padded signature", strings.Replace(doc, `"},"signed_by"`, `=="},"signed_by"`, 1), []VerifyKey{v1}, nil, "signature.value: not canonical"},
		{"whitespace is not tampering", strings.Replace(doc, `,"route_groups"`, ` ,  "route_groups"`, 1), []VerifyKey{v1}, nil, ""},
		{"member order is not tampering", moveFirstMemberLast(doc), []VerifyKey{v1}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify([]byte(tt.doc), tt.keys)
			switch {
			case tt.want != nil:
				if !errors.Is(err, tt.want) {
					t.Errorf("Verify = %v, want %v", err, tt.want)
				}
			case tt.text != "":
				if err == nil || !strings.Contains(err.Error(), tt.text) {
					t.Errorf("Verify = %v, want error containing %q", err, tt.text)
				}
			case err != nil:
				t.Errorf("Verify = %v, want nil", err)
			}
			// ParsePolicy agrees, and AllowUnsigned never rescues a document
			// that claims a signature.
			_, perr := ParsePolicy([]byte(tt.doc), Options{Keys: tt.keys, AllowUnsigned: true})
			if (err == nil) != (perr == nil) && !errors.Is(err, ErrUnsigned) {
				t.Errorf("ParsePolicy(AllowUnsigned) = %v, but Verify = %v", perr, err)
			}
		})
	}
}

func TestSignedRequiresSequenceAndIssuedAt(t *testing.T) {
	k := testKey(t, 1, "k1")
	vk := NewVerifyKey(k.Public())
	for _, member := range []string{"sequence", "issued_at"} {
		t.Run(member, func(t *testing.T) {
			doc, err := Sign(edit(t, basePolicy, func(m map[string]any) { delete(m, member) }), NewSigningKey(k), "i")
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParsePolicy(doc, Options{Keys: []VerifyKey{vk}})
			if err == nil || !strings.Contains(err.Error(), `missing required member "`+member+`"`) {
				t.Errorf("ParsePolicy = %v, want missing %s", err, member)
			}
		})
	}
}

func TestSignErrors(t *testing.T) {
	k := NewSigningKey(testKey(t, 1, "k1"))
	for _, tt := range []struct{ name, doc, issuer, want string }{
		{"empty issuer", basePolicy, "", "empty issuer"},
		{"duplicate", `{"a":1,"a":2}`, "i", "duplicate member"},
		{"not object", `"x"`, "i", "not a JSON object"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Sign([]byte(tt.doc), k, tt.issuer); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Sign = %v, want error containing %q", err, tt.want)
			}
		})
	}
	if _, err := Sign([]byte(basePolicy), SigningKey{}, "i"); err == nil {
		t.Error("Sign with zero SigningKey succeeded")
	}
	if s := k.String(); strings.Contains(s, "REDACTED") == false && !strings.Contains(s, "k1") {
		t.Errorf("SigningKey.String = %q", s)
	}
}

// moveFirstMemberLast moves the first member of a canonical document (sorted,
// so "apis") to the end.
func moveFirstMemberLast(doc string) string {
	i := strings.Index(doc, `,"contract_metadata"`)
	return "{" + doc[i+1:len(doc)-1] + "," + doc[1:i] + "}"
}
