package bundle

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
)

// TestConformanceSourceRules: bundle-v1.source-rules.json loads as an
// unsigned document with the development flag, and resolves
// GET /v1/orders/search to its route with its three source types.
func TestConformanceSourceRules(t *testing.T) {
	var v struct {
		PolicyBundle        json.RawMessage `json:"policy_bundle"`
		ExpectedSourceTypes []string        `json:"expected_source_types"`
	}
	loadVector(t, "bundle-v1.source-rules.json", &v)
	t.Run("bundle-v1-source-rules", func(t *testing.T) {
		if _, err := ParsePolicy(v.PolicyBundle, Options{}); !errors.Is(err, ErrUnsigned) {
			t.Errorf("ParsePolicy without AllowUnsigned = %v, want ErrUnsigned", err)
		}
		p, err := ParsePolicy(v.PolicyBundle, Options{AllowUnsigned: true, ModTime: testModTime})
		if err != nil {
			t.Fatalf("ParsePolicy: %v", err)
		}
		if p.Signed || p.Sequence != 0 || !p.IssuedAt.Equal(testModTime) {
			t.Errorf("unsigned defaults: Signed %v Sequence %d IssuedAt %v", p.Signed, p.Sequence, p.IssuedAt)
		}
		r := p.Resolve("GET", "/v1/orders/search")
		if r == nil {
			t.Fatal("Resolve(GET /v1/orders/search) = nil")
		}
		if r.ID != "orders.search" || r.Audience != "orders-api" {
			t.Errorf("route = %q audience %q, want orders.search, orders-api", r.ID, r.Audience)
		}
		var types []string
		for _, s := range r.Sources {
			types = append(types, s.Type)
		}
		if !slices.Equal(types, v.ExpectedSourceTypes) {
			t.Errorf("source types = %q, want %q", types, v.ExpectedSourceTypes)
		}
		if r.Freshness != Bounded || r.MaxStaleness.Seconds() != 300 {
			t.Errorf("freshness = %v %v, want bounded 300s", r.Freshness, r.MaxStaleness)
		}
		if got := p.Resolve("HEAD", "/v1/orders/search"); got != nil {
			t.Errorf("Resolve(HEAD) = %q, want nil (HEAD is not GET)", got.ID)
		}
	})
}
