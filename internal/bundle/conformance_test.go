package bundle

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/tpcluster/tpcluster/internal/conformance"
)

// TestConformance runs the manifest's bundle-v1 vectors (today one,
// bundle-v1.source-rules.json): the bundle loads as an unsigned document
// with the development flag only, and resolves GET /v1/orders/search to its
// route with the expected source types.
func TestConformance(t *testing.T) {
	for _, vec := range conformance.Vectors(t, "bundle-v1") {
		t.Run(vec.ID, func(t *testing.T) { testSourceRules(t, vec.Name()) })
	}
}

func testSourceRules(t *testing.T, name string) {
	var v struct {
		PolicyBundle        json.RawMessage `json:"policy_bundle"`
		ExpectedSourceTypes []string        `json:"expected_source_types"`
	}
	conformance.Load(t, name, &v)
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
}
