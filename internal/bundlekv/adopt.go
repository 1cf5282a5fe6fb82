package bundlekv

import (
	"context"
	"fmt"

	"github.com/tpcluster/tpcluster/internal/bundle"
)

// current makes the publisher's pair the bucket's newer one before a
// beacon: a pair another publish put there since (a one-shot `bundlepub
// publish` beside a running `publish --watch`) is adopted when both
// documents verify and neither is older than the pair held, so the change
// is beaconed within one interval instead of going stale.
//
// Anything else in the bucket is refused loudly, once per bucket state, and
// the publisher keeps beaconing its own pair: a document that does not
// verify, or one older than the pair held, is refused by every node too,
// which keep the pair this publisher beacons. So it never beacons an older
// pair over a newer valid one, nor lets junk in the bucket stop the beacons
// of the pair the fleet holds. An error means the bucket could not be read;
// then no beacon is sent.
func (p *Publisher) current(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	te, err := p.kv.Get(ctx, KeyTrustMaterial)
	if err != nil {
		return fmt.Errorf("read %s from bucket %s: %w", KeyTrustMaterial, p.cfg.Bucket, err)
	}
	pe, err := p.kv.Get(ctx, KeyPolicyBundle)
	if err != nil {
		return fmt.Errorf("read %s from bucket %s: %w", KeyPolicyBundle, p.cfg.Bucket, err)
	}
	seen := [2]uint64{te.Revision(), pe.Revision()}
	if seen == [2]uint64{p.trustRev, p.policyRev} || seen == p.refused {
		return nil // what this publisher beacons, or a state already refused
	}
	// ModTime stands in for a document without issued_at; the revision's
	// time is when it reached the nodes.
	topts, popts := p.cfg.Options, p.cfg.Options
	topts.ModTime, popts.ModTime = te.Created(), pe.Created()
	refuse := func(format string, args ...any) error {
		p.refused = seen
		p.log.Error("the bucket holds a pair this publisher does not beacon; it keeps beaconing its own, which the nodes keep too",
			"why", fmt.Sprintf(format, args...), "trust_material_revision", seen[0], "policy_bundle_revision", seen[1],
			"beaconing_trust_material_sequence", p.trust.Sequence, "beaconing_policy_bundle_sequence", p.policy.Sequence)
		return nil
	}
	trust, err := bundle.ParseTrustMaterial(te.Value(), topts)
	if err != nil {
		return refuse("%s revision %d does not verify: %v", KindTrustMaterial, te.Revision(), err)
	}
	pol, err := bundle.ParsePolicy(pe.Value(), popts)
	if err != nil {
		return refuse("%s revision %d does not verify: %v", KindPolicyBundle, pe.Revision(), err)
	}
	if trust.Sequence < p.trust.Sequence || pol.Sequence < p.policy.Sequence {
		return refuse("older than the pair beaconed: %s sequence %d, %s sequence %d",
			KindTrustMaterial, trust.Sequence, KindPolicyBundle, pol.Sequence)
	}
	if trust.SHA256 != p.trust.SHA256 || pol.SHA256 != p.policy.SHA256 {
		p.log.Warn("the bucket holds a newer pair, published by another publisher; beaconing it (the watched files are older)",
			"trust_material_sequence", trust.Sequence, "trust_material_sha256", trust.SHA256,
			"policy_bundle_sequence", pol.Sequence, "policy_bundle_sha256", pol.SHA256)
	}
	p.trust, p.policy = trust, pol
	p.trustRev, p.policyRev = seen[0], seen[1]
	return nil
}
