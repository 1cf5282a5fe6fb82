package bundle

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/conformance"
)

// sourceRulesVector is the shape of a bundle-v1 vector: a policy bundle
// and the source types its route allows, in order. The route's own values
// (method, template, id, audience, freshness) are read from the bundle.
type sourceRulesVector struct {
	PolicyBundle        json.RawMessage `json:"policy_bundle"`
	ExpectedSourceTypes []string        `json:"expected_source_types"`
}

// vectorBundle is what the test reads back from the vector's bundle to
// know what Resolve must return.
type vectorBundle struct {
	APIs []struct {
		APIID    string `json:"api_id"`
		Audience string `json:"audience"`
	} `json:"apis"`
	RouteGroups []struct {
		APIID  string `json:"api_id"`
		Routes []struct {
			RouteID      string `json:"route_id"`
			Method       string `json:"method"`
			PathTemplate string `json:"path_template"`
			Freshness    string `json:"freshness_class"`
			MaxStaleness int64  `json:"max_staleness_seconds"`
		} `json:"routes"`
	} `json:"route_groups"`
}

// TestConformance runs the manifest's bundle-v1 vectors: each bundle loads
// as an unsigned document with the development flag only, and each of its
// routes resolves by its method and template to itself, with the audience
// of its API, its freshness class and staleness, and the expected source
// types.
func TestConformance(t *testing.T) {
	conformance.Run(t, "bundle-v1", testSourceRules)
}

func testSourceRules(t *testing.T, v sourceRulesVector) {
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
	var b vectorBundle
	if err := json.Unmarshal(v.PolicyBundle, &b); err != nil {
		t.Fatal(err)
	}
	audience := map[string]string{}
	for _, api := range b.APIs {
		audience[api.APIID] = api.Audience
	}
	routes := 0
	for _, g := range b.RouteGroups {
		for _, want := range g.Routes {
			routes++
			r := p.Resolve(want.Method, want.PathTemplate)
			if r == nil {
				t.Errorf("Resolve(%s %s) = nil, want route %s", want.Method, want.PathTemplate, want.RouteID)
				continue
			}
			if r.ID != want.RouteID || r.Audience != audience[g.APIID] {
				t.Errorf("Resolve(%s %s) = %q audience %q, want %q audience %q", want.Method, want.PathTemplate, r.ID, r.Audience, want.RouteID, audience[g.APIID])
			}
			if r.Freshness != ParseFreshness(want.Freshness) || r.MaxStaleness != time.Duration(want.MaxStaleness)*time.Second {
				t.Errorf("route %s freshness = %v %v, want %s %ds", r.ID, r.Freshness, r.MaxStaleness, want.Freshness, want.MaxStaleness)
			}
			var types []string
			for _, s := range r.Sources {
				types = append(types, s.Type)
			}
			if !slices.Equal(types, v.ExpectedSourceTypes) {
				t.Errorf("route %s source types = %q, want %q", r.ID, types, v.ExpectedSourceTypes)
			}
			if want.Method == "GET" {
				if got := p.Resolve("HEAD", want.PathTemplate); got != nil {
					t.Errorf("Resolve(HEAD %s) = %q, want nil (HEAD is not GET)", want.PathTemplate, got.ID)
				}
			}
		}
	}
	if routes == 0 {
		t.Error("the vector's bundle has no routes to check")
	}
}
