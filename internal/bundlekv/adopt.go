package bundlekv

import (
	"context"
	"errors"
	"fmt"

	"github.com/tpcluster/tpcluster/internal/bundle"
)

// ErrOlderPairInBucket is what a beaconing publisher reports when the bucket
// holds a pair it may not beacon: a document missing, one that does not
// verify with the accepted keys, or one older than the pair it holds.
var ErrOlderPairInBucket = errors.New("the bucket holds no pair newer than or equal to the one this publisher beacons")

// current makes the publisher's pair the bucket's before a beacon: a pair
// another publish put there since (a one-shot `bundlepub publish` beside a
// running `publish --watch`) is adopted if both documents verify and
// neither is older than the pair held, so the change is beaconed within one
// interval instead of going stale (issue 17). Anything else is refused:
// current returns an error naming what it saw, and no beacon is sent, since
// a beacon for a pair the nodes do not hold keeps nothing fresh, and one for
// an older pair would speak over a newer one.
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
	if te.Revision() == p.trustRev && pe.Revision() == p.policyRev {
		return nil // what this publisher last put or found
	}
	// ModTime stands in for a document without issued_at; the revision's
	// time is when it reached the nodes.
	topts, popts := p.cfg.Options, p.cfg.Options
	topts.ModTime, popts.ModTime = te.Created(), pe.Created()
	trust, err := bundle.ParseTrustMaterial(te.Value(), topts)
	if err != nil {
		return fmt.Errorf("%w: %s revision %d does not verify: %v", ErrOlderPairInBucket, KindTrustMaterial, te.Revision(), err)
	}
	pol, err := bundle.ParsePolicy(pe.Value(), popts)
	if err != nil {
		return fmt.Errorf("%w: %s revision %d does not verify: %v", ErrOlderPairInBucket, KindPolicyBundle, pe.Revision(), err)
	}
	if trust.Sequence < p.trust.Sequence || pol.Sequence < p.policy.Sequence {
		return fmt.Errorf("%w: bucket has %s sequence %d and %s sequence %d, this publisher %d and %d",
			ErrOlderPairInBucket, KindTrustMaterial, trust.Sequence, KindPolicyBundle, pol.Sequence, p.trust.Sequence, p.policy.Sequence)
	}
	if trust.SHA256 != p.trust.SHA256 || pol.SHA256 != p.policy.SHA256 {
		p.log.Warn("the bucket holds a newer pair, published by another publisher; beaconing it (the watched files are older)",
			"trust_material_sequence", trust.Sequence, "trust_material_sha256", trust.SHA256,
			"policy_bundle_sequence", pol.Sequence, "policy_bundle_sha256", pol.SHA256)
	}
	p.trust, p.policy = trust, pol
	p.trustRev, p.policyRev = te.Revision(), pe.Revision()
	return nil
}
