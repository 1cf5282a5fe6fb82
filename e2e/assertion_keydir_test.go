package e2e

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/backendjwt"
	"github.com/tpcluster/tpcluster/internal/assertion"
	"github.com/tpcluster/tpcluster/internal/bundle"
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
	const (
		loadFor = 30 * time.Second
		workers = 3
		pace    = 100 * time.Millisecond // per worker: a few hundred requests in all
	)
	c := newFleet(t, fleetOpts{servers: 1, edit: func(w *world, policy map[string]any) {
		g := policy["route_groups"].([]any)[0].(map[string]any)
		g["routes"] = append(g["routes"].([]any), w.route("orders.asserted", "GET", "/v1/asserted/{id}",
			map[string]any{"backend_assertion": map[string]any{"audience": rotAudience, "ttl_seconds": int(rotTTL / time.Second)}}))
	}})

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
	ids := []string{"rot-0", "rot-1"}
	dirs := map[string]string{}
	oldKeys, newKeys := map[string]*keyfile.PrivateKey{}, map[string]*keyfile.PrivateKey{}
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
	seq := 1
	publish := func(keys []rotListed) {
		t.Helper()
		seq++
		rotPublish(t, c, seq, keys)
	}
	var start []rotListed
	for _, id := range ids {
		start = append(start, rotListed{oldKeys[id], "active"})
	}
	publish(start) // (2, 2): the old keys active

	up := newRotUpstream(t)
	var nodes []*node
	pids := map[string]int{}
	for _, id := range ids {
		n := c.start(t, nodeOpts{id: id, flags: []string{"--upstream", up.URL, "--assertion-issuer", rotIssuer,
			"--assertion-key-dir", dirs[id], "--log-level", "debug"}})
		nodes = append(nodes, n)
		pids[id] = n.cmd.Process.Pid
	}
	c.allOn(t, len(ids), 2, 2)
	v, err := backendjwt.New(backendjwt.Config{JWKSURL: nodes[0].URL + "/_tp/jwks.json", Issuer: rotIssuer, Audience: rotAudience})
	if err != nil {
		t.Fatal(err)
	}
	up.v.Store(v)

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

	var (
		allowed, denied atomic.Int64
		mu              sync.Mutex
		denials         []string // guarded by mu
		wg              sync.WaitGroup
	)
	hc := &http.Client{Timeout: 30 * time.Second}
	began := time.Now()
	stop := began.Add(loadFor)
	for w := range workers {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				n := nodes[(w+i)%len(nodes)]
				got, err := rotRequest(c.world, hc, fmt.Sprintf("%s/v1/asserted/w%d-%d", n.URL, w, i))
				switch {
				case err == nil && got == "200":
					allowed.Add(1)
				default:
					denied.Add(1)
					mu.Lock()
					denials = append(denials, fmt.Sprintf("%s at %s: %s %v", n.URL, time.Since(began).Round(time.Millisecond), got, err))
					mu.Unlock()
				}
				time.Sleep(pace) // paces the load; nothing waits on an effect here
			}
		})
	}

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
	var next []rotListed
	for _, id := range ids {
		next = append(next, rotListed{oldKeys[id], "active"}, rotListed{newKeys[id], "next"})
	}
	publish(next)
	nextAt := time.Since(began)
	c.allOn(t, len(ids), 3, 3)
	held(1, "trust_material_applied", oldKeys[ids[1]].KID()+","+newKeys[ids[1]].KID())
	nextOn := time.Since(began)
	// More than the verifier's 5 s unknown-kid refetch spacing after its
	// first fetch, so the first new kid it meets makes it refetch.
	time.Sleep(max(0, 10*time.Second-time.Since(began)))

	// (3) The switch: new active, old retired.
	var switched []rotListed
	for _, id := range ids {
		switched = append(switched, rotListed{oldKeys[id], "retired"}, rotListed{newKeys[id], "active"})
	}
	publish(switched)
	switchAt := time.Since(began)
	c.allOn(t, len(ids), 4, 4)
	switchOn := time.Since(began)

	// (4) The old files deleted; after the grace (the longest ttl plus
	// backendjwt's skew from the switch), the trust material drops the old
	// keys, and each node, re-reading, holds its new key only.
	for _, id := range ids {
		if err := os.Remove(filepath.Join(dirs[id], id+"-a.key")); err != nil {
			t.Fatal(err)
		}
	}
	grace := rotTTL + backendjwt.DefaultSkew
	time.Sleep(max(0, grace-(time.Since(began)-switchOn))) // the grace is time that must pass, not an effect
	var final []rotListed
	for _, id := range ids {
		final = append(final, rotListed{newKeys[id], "active"})
	}
	publish(final)
	finalAt := time.Since(began)
	c.allOn(t, len(ids), 5, 5)
	for i, id := range ids {
		held(i, "trust_material_applied", newKeys[id].KID())
	}
	finalOn := time.Since(began)
	wg.Wait()
	loadTook := time.Since(began)

	mu.Lock()
	up.mu.Lock()
	byKID := kidCounts(up.verified)
	verifiedTotal := 0
	for _, n := range up.verified {
		verifiedTotal += n
	}
	oldSigned, newSigned := 0, 0
	for _, id := range ids {
		oldSigned += up.verified[oldKeys[id].KID()]
		newSigned += up.verified[newKeys[id].KID()]
	}
	reasons := append([]string(nil), up.reasons...)
	up.mu.Unlock()
	t.Logf("load %s: %d requests allowed, %d denied; upstream verified %d (%s), refused %d; node 0 held its new key %s after SIGHUP; "+
		"next published at %s (all nodes on it, node 1 holding its new key, at %s), switch at %s (all on it at %s), old keys dropped at %s (all holding the new key only at %s)",
		loadTook.Round(time.Millisecond), allowed.Load(), denied.Load(), verifiedTotal, byKID, up.refused.Load(), hupTook.Round(time.Millisecond),
		nextAt.Round(time.Millisecond), nextOn.Round(time.Millisecond), switchAt.Round(time.Millisecond), switchOn.Round(time.Millisecond),
		finalAt.Round(time.Millisecond), finalOn.Round(time.Millisecond))
	if denied.Load() != 0 {
		t.Errorf("%d requests not allowed during the rotation, want 0: %s", denied.Load(), strings.Join(denials[:min(len(denials), 5)], "; "))
	}
	mu.Unlock()
	if up.refused.Load() != 0 {
		t.Errorf("the upstream refused %d assertions during the rotation, want 0: %s", up.refused.Load(), strings.Join(reasons[:min(len(reasons), 5)], "; "))
	}
	if int64(verifiedTotal) != allowed.Load() {
		t.Errorf("upstream verified %d requests, %d were allowed: want every allowed request verified", verifiedTotal, allowed.Load())
	}
	if allowed.Load() < 100 {
		t.Errorf("only %d requests allowed: the load did not run", allowed.Load())
	}
	if oldSigned == 0 || newSigned == 0 {
		t.Errorf("verified by kid %s: want assertions from both the old and the new keys", byKID)
	}

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
		up.mu.Lock()
		before := up.verified[newKeys[id].KID()]
		up.mu.Unlock()
		got, err := rotRequest(c.world, hc, fmt.Sprintf("%s/v1/asserted/after-%d", nodes[i].URL, i))
		if err != nil || got != "200" {
			t.Fatalf("%s after the rotation: %s %v", id, got, err)
		}
		up.mu.Lock()
		after := up.verified[newKeys[id].KID()]
		up.mu.Unlock()
		if after != before+1 {
			t.Errorf("%s after the rotation: verified with %s went from %d to %d, want one more", id, newKeys[id].KID(), before, after)
		}
		resp, err := http.Get(nodes[i].URL + "/_tp/jwks.json")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, id := range ids {
			if strings.Contains(string(b), `"kid":"`+oldKeys[id].KID()+`"`) || !strings.Contains(string(b), `"kid":"`+newKeys[id].KID()+`"`) {
				t.Errorf("%s JWKS after the rotation = %s, want %s and not %s", nodes[i].URL, b, newKeys[id].KID(), oldKeys[id].KID())
			}
		}
	}
	// A fresh, otherwise valid assertion signed with a retired key is
	// refused by backendjwt with a fresh JWKS; the same with a new key
	// verifies, so the refusal is the key's.
	fresh, err := backendjwt.New(backendjwt.Config{JWKSURL: nodes[1].URL + "/_tp/jwks.json", Issuer: rotIssuer, Audience: rotAudience})
	if err != nil {
		t.Fatal(err)
	}
	mint := func(k *keyfile.PrivateKey) string {
		t.Helper()
		m, err := assertion.New(assertion.Config{Issuer: rotIssuer, Key: k})
		if err != nil {
			t.Fatal(err)
		}
		got, err := m.Mint(&assertion.Request{Spec: &bundle.BackendAssertion{Audience: rotAudience, TTL: rotTTL},
			Subject: wSubject, RouteID: "orders.asserted", Method: "GET", Target: "/v1/asserted/late"})
		if err != nil {
			t.Fatal(err)
		}
		return got.Token
	}
	for _, id := range ids {
		if _, err := fresh.Verify(t.Context(), mint(newKeys[id])); err != nil {
			t.Errorf("an assertion signed with %s's new key: %v, want it verified", id, err)
		}
		_, err := fresh.Verify(t.Context(), mint(oldKeys[id]))
		if !errors.Is(err, backendjwt.ErrInvalid) || !strings.Contains(err.Error(), "unknown kid") {
			t.Errorf("an assertion signed with %s's retired key after its grace: err = %v, want ErrInvalid, unknown kid", id, err)
		}
	}
}
