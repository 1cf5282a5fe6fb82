package bundle

import (
	"fmt"
	"maps"
	"slices"
)

// RegionMode says how an audience's jtis are consumed across regions
// ([ours], docs/MULTI-REGION.md).
type RegionMode uint8

const (
	// RegionBound: only nodes of the audience's home region accept it, and
	// they consume in their own region's ledger. A replay in another region
	// is impossible by construction, at local latency.
	RegionBound RegionMode = iota + 1
	// HomeRegion: every region accepts the audience and consumes in the
	// home region's ledger, at WAN latency, still exactly once.
	HomeRegion
)

// String returns the bundle spelling.
func (m RegionMode) String() string {
	switch m {
	case RegionBound:
		return "region_bound"
	case HomeRegion:
		return "home_region"
	}
	return ""
}

// AudienceRegion is one audience_regions entry.
type AudienceRegion struct {
	Home string // region name: [a-z0-9][a-z0-9_-]*, at most 32 bytes
	Mode RegionMode
}

// ValidRegion reports whether s can name a region: it ends NATS stream
// names (TRUSTPLANE_REPLAY_<REGION>) and cluster names, so the alphabet is
// small.
func ValidRegion(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case (c == '-' || c == '_') && i > 0:
		default:
			return false
		}
	}
	return true
}

// parseAudienceRegions reads the optional top-level audience_regions
// object: audience → {home_region, mode}.
func parseAudienceRegions(doc object) (map[string]AudienceRegion, error) {
	o, ok, err := doc.obj("audience_regions")
	if err != nil || !ok {
		return nil, err
	}
	out := make(map[string]AudienceRegion, len(o.m))
	for _, aud := range slices.Sorted(maps.Keys(o.m)) {
		e, ok, err := o.obj(aud)
		if err != nil {
			return nil, err
		}
		if !ok || aud == "" {
			return nil, fmt.Errorf("%s: empty audience", o.at(aud))
		}
		if err := e.only("home_region", "mode"); err != nil {
			return nil, err
		}
		home, err := e.required("home_region")
		if err != nil {
			return nil, err
		}
		if !ValidRegion(home) {
			return nil, fmt.Errorf("%s: region %q: want 1 to 32 of [a-z0-9_-], starting with a letter or digit", e.at("home_region"), home)
		}
		mode, err := e.required("mode")
		if err != nil {
			return nil, err
		}
		var m RegionMode
		switch mode {
		case "region_bound":
			m = RegionBound
		case "home_region":
			m = HomeRegion
		default:
			return nil, fmt.Errorf("%s: unknown mode %q (want region_bound or home_region)", e.at("mode"), mode)
		}
		out[aud] = AudienceRegion{Home: home, Mode: m}
	}
	return out, nil
}
