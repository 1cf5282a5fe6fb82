package bundleedit

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// edit is one edit of a (policy bundle, trust material) pair in progress.
type edit struct {
	policyIn, trustIn             []byte
	policy, trust                 *object
	policyChanged, trustChanged   bool
	policySequence, trustSequence int64
	changes                       []string
}

// newEdit decodes both documents and checks that each has its kind's shape.
func newEdit(policy, trust []byte) (*edit, error) {
	e := &edit{policyIn: policy, trustIn: trust}
	var err error
	for _, d := range []struct {
		data []byte
		dst  **object
		seq  *int64
		want Kind
	}{{policy, &e.policy, &e.policySequence, Policy}, {trust, &e.trust, &e.trustSequence, TrustMaterial}} {
		if *d.dst, err = parseDoc(d.data); err != nil {
			return nil, fmt.Errorf("bundleedit: %s: %w", d.want, err)
		}
		k, err := kindOf(*d.dst)
		if err != nil {
			return nil, fmt.Errorf("bundleedit: %s input: %w", d.want, err)
		}
		if k != d.want {
			return nil, fmt.Errorf("bundleedit: the %s input is %s", d.want, k)
		}
		if err := checkShape(*d.dst, k); err != nil {
			return nil, fmt.Errorf("bundleedit: %s input: %w", d.want, err)
		}
		if v, ok := (*d.dst).get("sequence"); ok {
			n, _ := v.(json.Number)
			*d.seq, _ = strconv.ParseInt(string(n), 10, 64)
		}
	}
	return e, nil
}

func (e *edit) notef(format string, args ...any) {
	e.changes = append(e.changes, fmt.Sprintf(format, args...))
}

// finish encodes the changed documents unsigned and checks that each still
// loads as its kind, so an edit never hands back a document a verifier
// would refuse.
func (e *edit) finish() (*Result, error) {
	r := &Result{
		Policy: e.policyIn, Trust: e.trustIn,
		PolicyChanged: e.policyChanged, TrustChanged: e.trustChanged,
		PolicySequence: e.policySequence, TrustSequence: e.trustSequence,
		Changes: e.changes,
	}
	for _, d := range []struct {
		changed bool
		tree    *object
		dst     *[]byte
		kind    Kind
	}{{e.policyChanged, e.policy, &r.Policy, Policy}, {e.trustChanged, e.trust, &r.Trust, TrustMaterial}} {
		if !d.changed {
			continue
		}
		stripEnvelope(d.tree)
		out, err := d.tree.encode()
		if err != nil {
			return nil, fmt.Errorf("bundleedit: encode %s: %w", d.kind, err)
		}
		if err := checkShape(d.tree, d.kind); err != nil {
			return nil, fmt.Errorf("bundleedit: edited %s does not load: %w", d.kind, err)
		}
		*d.dst = out
	}
	return r, nil
}

// routeSet is the routes of a policy bundle, in document order.
type routeSet struct {
	ids    []string
	routes []*object
}

func (rs routeSet) byID(id string) *object {
	for i, r := range rs.routes {
		if rs.ids[i] == id {
			return r
		}
	}
	return nil
}

func (e *edit) routes() (routeSet, error) {
	var rs routeSet
	groups, err := e.policy.objects("route_groups", "")
	if err != nil {
		return rs, err
	}
	for i, g := range groups {
		routes, err := g.objects("routes", fmt.Sprintf("route_groups[%d]", i))
		if err != nil {
			return rs, err
		}
		for _, r := range routes {
			rs.ids = append(rs.ids, r.str("route_id"))
			rs.routes = append(rs.routes, r)
		}
	}
	return rs, nil
}
