package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/backendjwt"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// TestAssertionKeyDirRotationUnderLoad is the rotation runbook of
// docs/BACKEND-JWT.md with no restart in any step: two nodes run with
// --assertion-key-dir holding only their old key; under load, each node's
// new key is dropped into its directory (node 0 is then sent SIGHUP, node 1
// finds it when the trust material listing it next is applied), published
// next, then active with the old one retired; the old files are deleted and,
// after the grace, a trust material without the old keys is published.
// Each node keeps its PID and starts once; no request is denied, no
// upstream refuses an assertion, every allowed request was verified, and
// a retired-key assertion is refused after its grace. Before all that, a
// node given a directory without a usable key exits 2 naming the flag.
func TestAssertionKeyDirRotationUnderLoad(t *testing.T) {
	r := newRotationRig(t)
	c, ids := r.c, r.ids

	// At start, a directory with no usable key (a too-open one only)
	// stops the node with status 2, naming the flag and the file.
	bad := filepath.Join(c.dir, "keys-bad")
	if err := os.Mkdir(bad, 0o700); err != nil {
		t.Fatal(err)
	}
	k, err := keyfile.Generate("open")
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Write(filepath.Join(bad, "open")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(bad, "open.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runBinary(t, "verifierd", "--listen", "127.0.0.1:1", "--trust-material", c.trust, "--policy-bundle", c.policy,
		"--bundle-public-key", c.bundlePub, "--assertion-key-dir", bad, "--assertion-issuer", rotIssuer)
	if code != 2 || !strings.Contains(stderr, "--assertion-key-dir="+bad) || !strings.Contains(stderr, "open.key: private key file has mode 0644") {
		t.Fatalf("verifierd with a key dir holding only a 0644 key: exit %d, stderr %s; want 2 naming --assertion-key-dir and open.key", code, stderr)
	}

	// Each node's key directory, with its old key only; the new keys are
	// generated now and dropped in later. Private keys are written 0600.
	dirs := map[string]string{}
	oldKeys, newKeys := r.oldKeys, r.newKeys
	staged := t.TempDir() // the new keys wait here, on the same file system
	for _, id := range ids {
		dirs[id] = filepath.Join(c.dir, "keys-"+id)
		if err := os.Mkdir(dirs[id], 0o700); err != nil {
			t.Fatal(err)
		}
		for _, gen := range []string{"a", "b"} {
			k, err := keyfile.Generate(id + "-" + gen)
			if err != nil {
				t.Fatal(err)
			}
			where := dirs[id]
			if gen == "b" {
				where = staged
			}
			if err := k.Write(filepath.Join(where, id+"-"+gen)); err != nil {
				t.Fatal(err)
			}
			if gen == "a" {
				oldKeys[id] = k
			} else {
				newKeys[id] = k
			}
		}
	}
	r.publish(t, func(id string) []listedKey { // (2, 2): the old keys active
		return []listedKey{{oldKeys[id], "active"}}
	})
	r.startNodes(t, func(id string) []string {
		return []string{"--assertion-key-dir", dirs[id], "--log-level", "debug"}
	})
	nodes := r.nodes
	pids := map[string]int{}
	for i, id := range ids {
		pids[id] = nodes[i].cmd.Process.Pid
	}

	// held waits until node i's log says it re-read its keys, for cause,
	// holding exactly want (kids, in the order the node holds them).
	held := func(i int, cause, want string) time.Duration {
		t.Helper()
		line := fmt.Sprintf("cause=%s held=%s ", cause, want)
		return testwait.Until(t, 30*time.Second, ids[i]+" holding "+want, func() error {
			if err := nodes[i].running(); err != nil {
				return err
			}
			if !strings.Contains(nodes[i].logs.String(), line) {
				return fmt.Errorf("no %q in its log yet", line)
			}
			return nil
		})
	}

	load := r.startLoad(30 * time.Second)

	// (1) Mid-load, the new keys arrive in the directories (moved in
	// whole, as docs/BACKEND-JWT.md says). Node 0 is sent SIGHUP; node 1
	// is left to find its key when the next trust material is applied.
	time.Sleep(3 * time.Second) // schedules the step: the load runs on the old keys first
	for _, id := range ids {
		name := id + "-b.key"
		if err := os.Rename(filepath.Join(staged, name), filepath.Join(dirs[id], name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nodes[0].cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	hupTook := held(0, "sighup", oldKeys[ids[0]].KID()+","+newKeys[ids[0]].KID())

	// (2) The new keys listed next.
	r.publish(t, func(id string) []listedKey {
		return []listedKey{{oldKeys[id], "active"}, {newKeys[id], "next"}}
	})
	nextAt := load.since()
	c.allOn(t, len(ids), 3, 3)
	held(1, "trust_material_applied", oldKeys[ids[1]].KID()+","+newKeys[ids[1]].KID())
	nextOn := load.since()
	// More than the verifier's 5 s unknown-kid refetch spacing after its
	// first fetch, so the first new kid it meets makes it refetch.
	time.Sleep(max(0, 10*time.Second-load.since()))

	// (3) The switch: new active, old retired.
	r.publish(t, func(id string) []listedKey {
		return []listedKey{{oldKeys[id], "retired"}, {newKeys[id], "active"}}
	})
	switchAt := load.since()
	c.allOn(t, len(ids), 4, 4)
	switchOn := load.since()

	// (4) The old files deleted; after the grace (the longest ttl plus
	// backendjwt's skew from the switch), the trust material drops the old
	// keys, and each node, re-reading, holds its new key only.
	for _, id := range ids {
		if err := os.Remove(filepath.Join(dirs[id], id+"-a.key")); err != nil {
			t.Fatal(err)
		}
	}
	grace := rotTTL + backendjwt.DefaultSkew
	time.Sleep(max(0, grace-(load.since()-switchOn))) // the grace is time that must pass, not an effect
	r.publish(t, func(id string) []listedKey {
		return []listedKey{{newKeys[id], "active"}}
	})
	finalAt := load.since()
	c.allOn(t, len(ids), 5, 5)
	for i, id := range ids {
		held(i, "trust_material_applied", newKeys[id].KID())
	}
	finalOn := load.since()
	figures := r.checkLoad(t, load)
	t.Logf("%s; node 0 held its new key %s after SIGHUP; "+
		"next published at %s (all nodes on it, node 1 holding its new key, at %s), switch at %s (all on it at %s), old keys dropped at %s (all holding the new key only at %s)",
		figures, hupTook.Round(time.Millisecond),
		nextAt.Round(time.Millisecond), nextOn.Round(time.Millisecond), switchAt.Round(time.Millisecond), switchOn.Round(time.Millisecond),
		finalAt.Round(time.Millisecond), finalOn.Round(time.Millisecond))

	// No restart: the same processes, each started once.
	for i, id := range ids {
		if err := nodes[i].running(); err != nil {
			t.Errorf("%s: %v", id, err)
		}
		if got := nodes[i].cmd.Process.Pid; got != pids[id] {
			t.Errorf("%s PID %d, want %d throughout", id, got, pids[id])
		}
		if n := strings.Count(nodes[i].logs.String(), "msg=\"verifierd starting\""); n != 1 {
			t.Errorf("%s logged %d starts, want 1", id, n)
		}
	}
	// Each node signs with its new key only, and serves a JWKS without the
	// old keys.
	for i, id := range ids {
		r.up.mu.Lock()
		before := r.up.verified[newKeys[id].KID()]
		r.up.mu.Unlock()
		got, err := rotRequest(c.world, r.hc, fmt.Sprintf("%s/v1/asserted/after-%d", nodes[i].URL, i))
		if err != nil || got != "200" {
			t.Fatalf("%s after the rotation: %s %v", id, got, err)
		}
		r.up.mu.Lock()
		after := r.up.verified[newKeys[id].KID()]
		r.up.mu.Unlock()
		if after != before+1 {
			t.Errorf("%s after the rotation: verified with %s went from %d to %d, want one more", id, newKeys[id].KID(), before, after)
		}
		r.checkJWKS(t, nodes[i])
	}
	// A fresh, otherwise valid assertion signed with a retired key is
	// refused by backendjwt with a fresh JWKS.
	r.checkRetiredRefused(t)
}
