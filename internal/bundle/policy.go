package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/tpcluster/tpcluster/internal/signerclass"
)

// Document versions and kinds.
const (
	PolicyVersion        = "trustplane-bundle-v1"
	PolicyKind           = "policy_runtime_bundle"
	TrustMaterialVersion = "trustplane-trust-material-v1"
	TrustMaterialKind    = "trust_material"
)

// Options says how ParsePolicy and ParseTrustMaterial authenticate a
// document.
type Options struct {
	// AllowUnsigned accepts unsigned documents (--dev-allow-unsigned-bundles,
	// SPEC §5.4). A document that carries a signature is verified whatever
	// this says.
	AllowUnsigned bool
	// Keys are the accepted bundle-signing keys; signed_by.kid selects one.
	Keys []VerifyKey
	// ModTime is an unsigned document's issued_at when it has none (SPEC
	// §5.1: the file's modification time).
	ModTime time.Time
	// EgressCheck, if set, is asked about every declared egress provider
	// ([ours], docs/OAUTH-EGRESS.md); an error refuses the policy. verifierd
	// refuses a provider it holds no credential for, so that a bundle it
	// could not serve is rolled back before any request meets it. If nil,
	// providers are not checked (bundlepub, offline tools).
	EgressCheck func(p *EgressProvider) error
}

// Policy is a loaded policy bundle (SPEC §5.1, §5.3). It is immutable once
// returned and safe for concurrent use.
type Policy struct {
	TrustDomain string
	Sequence    int64
	IssuedAt    time.Time
	SHA256      string // lowercase hex SHA-256 of the exact bytes parsed
	Signed      bool
	// DefaultRequiredKeyBinding is default_required_key_binding, else
	// software.
	DefaultRequiredKeyBinding signerclass.Class
	Routes                    []*Route // in document order
	Revocations               []Revocation
	// ProvenancePolicy is the bundle-level provenance_policy, applying to
	// every source; nil if absent.
	ProvenancePolicy *ProvenancePolicy
	// AudienceRegions maps an audience to its home region and mode
	// (audience_regions, [ours], docs/MULTI-REGION.md); nil if absent.
	AudienceRegions map[string]AudienceRegion
	// EgressProviders are the declared egress_providers by provider_id
	// ([ours], docs/OAUTH-EGRESS.md); nil if absent.
	EgressProviders map[string]*EgressProvider

	index map[string]*methodIndex
	byID  map[string]*Route
}

// Revocation is one revocations[] entry (SPEC §5.1): a passport whose jti,
// sub or header kid (Type) equals Value is denied passport_revoked, for
// Issuer only when set, until Until when set.
type Revocation struct {
	Type   string // "jti", "subject" or "kid"
	Value  string
	Issuer string    // empty: any issuer
	Until  time.Time // zero: forever
}

// ParsePolicy parses and authenticates a policy bundle. Errors name the
// offending field by its path in the document and wrap ErrUnsigned,
// ErrUnknownKey or ErrBadSignature where those apply.
//
// Members: unknown members are refused everywhere (top level, apis,
// route_groups, routes, sources, policies, revocations), except the
// informational top-level contract_metadata and scopes, and
// revocation_feed, which is accepted and not used (revocations come from
// the bundle itself). An explicit null is refused, never read as absent.
func ParsePolicy(data []byte, o Options) (*Policy, error) {
	p, err := parsePolicy(data, o)
	if err != nil {
		return nil, fmt.Errorf("bundle: policy: %w", err)
	}
	return p, nil
}

func parsePolicy(data []byte, o Options) (*Policy, error) {
	top, err := parseTree(data)
	if err != nil {
		return nil, err
	}
	h, err := loadHeader(top, PolicyVersion, PolicyKind, verifyKeys(o.Keys), o.AllowUnsigned, o.ModTime)
	if err != nil {
		return nil, err
	}
	doc := object{m: top}
	if err := doc.only("version", "kind", "trust_domain", "apis", "route_groups", "scopes",
		"default_required_key_binding", "default_freshness_class", "default_max_staleness_seconds",
		"revocations", "revocation_feed", "provenance_policy", "signed_by", "signature",
		"contract_metadata", "sequence", "issued_at", "audience_regions", "egress_providers"); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	p := &Policy{
		Sequence:                  h.sequence,
		IssuedAt:                  h.issuedAt,
		SHA256:                    hex.EncodeToString(sum[:]),
		Signed:                    h.signed,
		DefaultRequiredKeyBinding: signerclass.Software,
		byID:                      make(map[string]*Route),
	}
	if p.TrustDomain, err = doc.required("trust_domain"); err != nil {
		return nil, err
	}
	if kb, ok, err := keyBinding(doc, "default_required_key_binding"); err != nil {
		return nil, err
	} else if ok {
		p.DefaultRequiredKeyBinding = kb
	}
	d := routeDefaults{keyBinding: p.DefaultRequiredKeyBinding, freshness: "realtime"}
	if name, ok, err := doc.str("default_freshness_class"); err != nil {
		return nil, err
	} else if ok {
		d.freshness = name // unknown names load (SPEC §8.3)
	}
	if d.maxStaleness, _, err = staleness(doc, "default_max_staleness_seconds"); err != nil {
		return nil, err
	}
	if pp, ok, err := doc.obj("provenance_policy"); err != nil {
		return nil, err
	} else if ok {
		if p.ProvenancePolicy, err = parseProvenancePolicy(pp); err != nil {
			return nil, err
		}
	}
	if _, _, err := doc.obj("revocation_feed"); err != nil {
		return nil, err
	}
	if p.Revocations, err = parseRevocations(doc); err != nil {
		return nil, err
	}
	if p.AudienceRegions, err = parseAudienceRegions(doc); err != nil {
		return nil, err
	}
	if p.EgressProviders, err = parseEgressProviders(doc); err != nil {
		return nil, err
	}
	d.providers = p.EgressProviders
	if o.EgressCheck != nil {
		for _, id := range slices.Sorted(maps.Keys(p.EgressProviders)) {
			if err := o.EgressCheck(p.EgressProviders[id]); err != nil {
				return nil, fmt.Errorf("egress_providers: provider %q: %w", id, err)
			}
		}
	}
	audiences, err := parseAPIs(doc)
	if err != nil {
		return nil, err
	}
	where := make(map[*Route]string)
	groups, ok, err := doc.objects("route_groups")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, missing(doc, "route_groups")
	}
	var groupIDs []string
	for _, g := range groups {
		if err := g.only("route_group_id", "api_id", "routes"); err != nil {
			return nil, err
		}
		gid, err := g.required("route_group_id")
		if err != nil {
			return nil, err
		}
		if slices.Contains(groupIDs, gid) {
			return nil, fmt.Errorf("%s: duplicate route_group_id %q", g.at("route_group_id"), gid)
		}
		groupIDs = append(groupIDs, gid)
		api, err := g.required("api_id")
		if err != nil {
			return nil, err
		}
		aud, known := audiences[api]
		if !known {
			return nil, fmt.Errorf("%s: no API %q in apis", g.at("api_id"), api)
		}
		d.audience = aud
		routes, ok, err := g.objects("routes")
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, missing(g, "routes")
		}
		for _, ro := range routes {
			r, err := parseRoute(ro, d)
			if err != nil {
				return nil, err
			}
			if other := p.byID[r.ID]; other != nil {
				return nil, fmt.Errorf("%s: duplicate route_id %q (also at %s)", ro.at("route_id"), r.ID, where[other])
			}
			p.byID[r.ID] = r
			where[r] = ro.path
			p.Routes = append(p.Routes, r)
		}
	}
	if p.index, err = buildIndex(p.Routes, where); err != nil {
		return nil, err
	}
	return p, nil
}

// parseAPIs returns each api_id's audience.
func parseAPIs(doc object) (map[string]string, error) {
	apis, ok, err := doc.objects("apis")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, missing(doc, "apis")
	}
	audiences := make(map[string]string, len(apis))
	for _, a := range apis {
		if err := a.only("api_id", "audience", "base_url"); err != nil {
			return nil, err
		}
		id, err := a.required("api_id")
		if err != nil {
			return nil, err
		}
		if _, dup := audiences[id]; dup {
			return nil, fmt.Errorf("%s: duplicate api_id %q", a.at("api_id"), id)
		}
		if audiences[id], err = a.required("audience"); err != nil {
			return nil, err
		}
		// base_url is informational (SPEC §10.2).
		if _, _, err := a.str("base_url"); err != nil {
			return nil, err
		}
	}
	return audiences, nil
}

func parseRevocations(doc object) ([]Revocation, error) {
	entries, _, err := doc.objects("revocations")
	if err != nil {
		return nil, err
	}
	var out []Revocation
	for _, e := range entries {
		if err := e.only("type", "value", "issuer", "until"); err != nil {
			return nil, err
		}
		var r Revocation
		if r.Type, err = e.required("type"); err != nil {
			return nil, err
		}
		if r.Type != "jti" && r.Type != "subject" && r.Type != "kid" {
			return nil, fmt.Errorf("%s: unknown revocation type %q", e.at("type"), r.Type)
		}
		if r.Value, err = e.required("value"); err != nil {
			return nil, err
		}
		if r.Issuer, _, err = e.text("issuer"); err != nil {
			return nil, err
		}
		if r.Until, _, err = e.timestamp("until"); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
