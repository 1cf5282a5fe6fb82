package bundle

import (
	"strings"
	"testing"
)

func TestAudienceRegions(t *testing.T) {
	base := `{"version":"trustplane-bundle-v1","kind":"policy_runtime_bundle","trust_domain":"t",
"apis":[{"api_id":"a","audience":"orders-api","base_url":"http://x"}],
"route_groups":[{"route_group_id":"g","api_id":"a","routes":[{"route_id":"r","method":"GET","path_template":"/x",
"freshness_class":"offline-ok","allowed_sources":[{"source_type":"software_jwks","issuer":"i","trust_domain":"t","subject_exact":"s"}]}]}]`
	tests := []struct {
		name, regions, wantErr string
		want                   map[string]AudienceRegion
	}{
		{"absent", "", "", nil},
		{"both modes", `{"orders-api":{"home_region":"eu-west","mode":"region_bound"},"billing":{"home_region":"us1","mode":"home_region"}}`, "",
			map[string]AudienceRegion{"orders-api": {"eu-west", RegionBound}, "billing": {"us1", HomeRegion}}},
		{"unknown mode", `{"a":{"home_region":"eu","mode":"nearest"}}`, `audience_regions.a.mode: unknown mode "nearest"`, nil},
		{"bad region", `{"a":{"home_region":"EU","mode":"region_bound"}}`, `audience_regions.a.home_region: region "EU"`, nil},
		{"dot in region", `{"a":{"home_region":"eu.west","mode":"region_bound"}}`, `region "eu.west"`, nil},
		{"missing mode", `{"a":{"home_region":"eu"}}`, `missing required member "mode"`, nil},
		{"unknown member", `{"a":{"home_region":"eu","mode":"region_bound","ttl":3}}`, `unknown member "ttl"`, nil},
		{"not an object", `{"a":"eu"}`, `audience_regions.a`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := base
			if tt.regions != "" {
				doc += `,"audience_regions":` + tt.regions
			}
			p, err := ParsePolicy([]byte(doc+"}"), Options{AllowUnsigned: true})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParsePolicy = %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(p.AudienceRegions) != len(tt.want) {
				t.Fatalf("AudienceRegions = %v, want %v", p.AudienceRegions, tt.want)
			}
			for k, v := range tt.want {
				if p.AudienceRegions[k] != v {
					t.Errorf("AudienceRegions[%s] = %v, want %v", k, p.AudienceRegions[k], v)
				}
			}
		})
	}
}
