package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/backendjwt"
	"github.com/tpcluster/tpcluster/internal/keyfile"
)

// TestAssertionKeyRotationUnderLoad is issue 15 item 4 and the rotation
// runbook of docs/BACKEND-JWT.md: while signed requests run against two
// nodes on a route with backend_assertion, the trust material lists each
// node's new key next, then active with the old one retired; the nodes hold
// both keys (--assertion-key twice) and switch without a restart. No
// upstream refuses a valid assertion, every allowed request was verified
// upstream, no request is denied, and once the old keys' grace has passed
// and a trust material without them is out, an assertion signed with an
// old key is refused by backendjwt with a fresh JWKS.
func TestAssertionKeyRotationUnderLoad(t *testing.T) {
	r := newRotationRig(t)
	c, ids := r.c, r.ids

	// Each node's old and new key, generated here, written 0600.
	keyFiles := map[string][]string{}
	for _, id := range ids {
		for _, gen := range []string{"a", "b"} {
			k, err := keyfile.Generate(id + "-" + gen)
			if err != nil {
				t.Fatal(err)
			}
			base := filepath.Join(c.dir, "assertion-"+id+"-"+gen)
			if err := k.Write(base); err != nil {
				t.Fatal(err)
			}
			keyFiles[id] = append(keyFiles[id], base+".key")
			if gen == "a" {
				r.oldKeys[id] = k
			} else {
				r.newKeys[id] = k
			}
		}
	}
	r.publish(t, func(id string) []listedKey { // (2, 2): the old keys active
		return []listedKey{{r.oldKeys[id], "active"}}
	})
	r.startNodes(t, func(id string) []string { // both keys from the start: --assertion-key twice
		var flags []string
		for _, f := range keyFiles[id] {
			flags = append(flags, "--assertion-key", f)
		}
		return flags
	})

	load := r.startLoad(20 * time.Second)

	// Mid-load, the runbook: (2) the new keys next, (3) the new keys active
	// and the old ones retired. The nodes already hold both keys.
	time.Sleep(4 * time.Second) // schedules the step: the load runs on the old keys first
	r.publish(t, func(id string) []listedKey {
		return []listedKey{{r.oldKeys[id], "active"}, {r.newKeys[id], "next"}}
	})
	nextAt := load.since()
	c.allOn(t, len(ids), 3, 3)
	nextOn := load.since()
	// More than the verifier's 5 s unknown-kid refetch spacing after its
	// first fetch, so the first new kid it meets makes it refetch.
	time.Sleep(max(0, 10*time.Second-load.since()))
	r.publish(t, func(id string) []listedKey {
		return []listedKey{{r.oldKeys[id], "retired"}, {r.newKeys[id], "active"}}
	})
	switchAt := load.since()
	c.allOn(t, len(ids), 4, 4)
	switchOn := load.since()

	figures := r.checkLoad(t, load)
	t.Logf("%s; next published at %s (all nodes on it at %s), switch at %s (all nodes on it at %s)", figures,
		nextAt.Round(time.Millisecond), nextOn.Round(time.Millisecond), switchAt.Round(time.Millisecond), switchOn.Round(time.Millisecond))
	// After the switch, each node signs with its new key only.
	up := r.up
	for i, id := range ids {
		up.mu.Lock()
		before := kidCounts(up.verified)
		up.mu.Unlock()
		got, err := rotRequest(c.world, r.hc, fmt.Sprintf("%s/v1/asserted/after-%d", r.nodes[i].URL, i))
		if err != nil || got != "200" {
			t.Fatalf("%s after the switch: %s %v", id, got, err)
		}
		up.mu.Lock()
		now := kidCounts(up.verified)
		up.verified[r.newKeys[id].KID()]--
		lessOne := kidCounts(up.verified)
		up.verified[r.newKeys[id].KID()]++
		up.mu.Unlock()
		if lessOne != before {
			t.Errorf("%s after the switch: verified by kid went from %s to %s, want one more with %s only",
				id, before, now, r.newKeys[id].KID())
		}
	}

	// (4) After the old keys' grace (the longest ttl plus backendjwt's skew
	// from the switch), the trust material drops them.
	grace := rotTTL + backendjwt.DefaultSkew
	time.Sleep(max(0, grace-(load.since()-switchOn))) // the grace is time that must pass, not an effect
	r.publish(t, func(id string) []listedKey {
		return []listedKey{{r.newKeys[id], "active"}}
	})
	c.allOn(t, len(ids), 5, 5)
	for _, n := range r.nodes {
		r.checkJWKS(t, n)
	}
	r.checkRetiredRefused(t)
	t.Logf("old keys dropped from the trust material %s after the switch (grace %s); a retired-key assertion refused", (load.since() - switchOn).Round(time.Millisecond), grace)
}
