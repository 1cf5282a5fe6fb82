package bundleedit

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundle"
)

func TestSignAndCheck(t *testing.T) {
	policy, trust := testDocs(t)
	k := testKey(t, 9, "bundle-1")
	keys := bundle.Options{Keys: []bundle.VerifyKey{bundle.NewVerifyKey(k.Public())}}
	other := bundle.Options{Keys: []bundle.VerifyKey{bundle.NewVerifyKey(testKey(t, 8, "bundle-1").Public())}}
	for _, tt := range []struct {
		doc  []byte
		kind Kind
		seq  int64
	}{{policy, Policy, 7}, {trust, TrustMaterial, 4}} {
		t.Run(tt.kind.String(), func(t *testing.T) {
			signed, s, err := Sign(tt.doc, k, SignOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if s.Kind != tt.kind || s.Sequence != tt.seq || s.KID != "bundle-1" || s.Issuer != DefaultSignedByIssuer ||
				!s.IssuedAt.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
				t.Errorf("Sign summary = %+v: sequence and issued_at must be kept", s)
			}
			if _, err := Check(signed, keys); err != nil {
				t.Errorf("Check(signed) = %v", err)
			}
			if _, err := Check(signed, other); !errors.Is(err, bundle.ErrBadSignature) {
				t.Errorf("Check with another key of the same kid = %v, want ErrBadSignature", err)
			}
			if _, err := Check(signed, bundle.Options{}); !errors.Is(err, bundle.ErrUnknownKey) {
				t.Errorf("Check with no key = %v, want ErrUnknownKey", err)
			}
			if _, err := Check(tt.doc, keys); !errors.Is(err, bundle.ErrUnsigned) {
				t.Errorf("Check(unsigned) = %v, want ErrUnsigned", err)
			}
			seq := tt.seq + 1
			at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
			_, s, err = Sign(tt.doc, k, SignOptions{Issuer: "iss", Header: Header{Sequence: &seq, IssuedAt: &at}})
			if err != nil || s.Sequence != seq || !s.IssuedAt.Equal(at) || s.Issuer != "iss" {
				t.Errorf("Sign with header = %+v, %v", s, err)
			}
		})
	}
}

func TestSignRefuses(t *testing.T) {
	policy, _ := testDocs(t)
	k := testKey(t, 9, "bundle-1")
	low := int64(6)
	noSeq := []byte(strings.Replace(string(policy), `"sequence": 7,`, "", 1))
	noAt := []byte(strings.Replace(string(policy), `"issued_at": "2026-01-01T00:00:00Z",`, "", 1))
	badShape := []byte(strings.Replace(string(policy), `"method": "POST"`, `"method": "post"`, 1))
	tests := []struct {
		name string
		doc  []byte
		h    Header
		want string
	}{
		{"lower sequence", policy, Header{Sequence: &low}, "--sequence 6 is below the document's sequence 7"},
		{"no sequence", noSeq, Header{}, "give --sequence N"},
		{"no issued_at", noAt, Header{}, "give --issued-at now"},
		{"bad shape", badShape, Header{}, "not an upper-case HTTP method"},
		{"unknown kind", []byte(`{"version":"x","kind":"y"}`), Header{}, "neither a policy bundle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Sign(tt.doc, k, SignOptions{Header: tt.h})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Sign = %v, want error containing %q", err, tt.want)
			}
		})
	}
}
