package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/signer"
	"github.com/tpcluster/tpcluster/internal/transcript"
)

// Issue 6 end to end: the NATS bundle channel with real verifierd and
// bundlepub binaries and a real nats-server.

// channel is a world published over NATS: its beacon key and the NATS URL.
type channel struct {
	*world
	url       string
	up        *upstream
	beaconKey string // beacon.key
	beaconPub string // beacon.pub
}

func newChannel(t testing.TB, url string, edit func(w *world, policy map[string]any)) *channel {
	t.Helper()
	w := newWorldWith(t, edit)
	bk, err := keyfile.Generate("e2e-beacon-1")
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(w.dir, "beacon")
	if err := bk.Write(base); err != nil {
		t.Fatal(err)
	}
	return &channel{world: w, url: url, up: newUpstream(t), beaconKey: base + ".key", beaconPub: base + ".pub"}
}

// bundlepub runs a bundlepub subcommand to completion.
func bundlepub(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(binary(t, "bundlepub"), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "TPCLUSTER_NATS_URL=")
	err := cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode(), out.String(), errb.String()
	}
	if err != nil {
		t.Fatalf("bundlepub %v: %v", args, err)
	}
	return 0, out.String(), errb.String()
}

func mustBundlepub(t testing.TB, args ...string) string {
	t.Helper()
	code, out, errs := bundlepub(t, args...)
	if code != 0 {
		t.Fatalf("bundlepub %v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errs)
	}
	return out
}

// publishOnce publishes the channel's files, without beacons, and returns
// bundlepub's output.
func (c *channel) publishArgs(extra ...string) []string {
	return append([]string{"publish", "--nats-url", c.url, "--trust-material", c.trust,
		"--policy-bundle", c.policy, "--bundle-public-key", c.bundlePub}, extra...)
}

// publisher is a long-running bundlepub publish.
type publisher struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
}

// startPublisher runs bundlepub publish with beacons every interval until
// stop or the end of the test, and waits until its first publish is done.
func (c *channel) startPublisher(t testing.TB, interval time.Duration) *publisher {
	t.Helper()
	p := &publisher{out: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(binary(t, "bundlepub"), c.publishArgs("--beacon-key", c.beaconKey, "--beacon-interval", interval.String())...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("bundlepub publish output:\n%s", p.out.String())
		}
	})
	waitFor(t, 30*time.Second, "bundlepub publish running", func() error {
		select {
		case <-p.exited:
			return fmt.Errorf("bundlepub exited: %s", p.out.String())
		default:
		}
		if !strings.Contains(p.out.String(), "publishing: beacons every") {
			return errors.New("not yet")
		}
		return nil
	})
	return p
}

func (p *publisher) stop(t testing.TB) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("bundlepub publish did not stop within 20s of SIGTERM")
	}
}

// startKVNode starts verifierd in NATS mode (no bundle files) and proxy
// mode with the channel's keys. dataDir "" is a fresh one.
func (c *channel) startKVNode(t testing.TB, id, dataDir string, wantReady bool, extra ...string) *node {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	listen := freeAddr(t)
	args := append([]string{
		"--listen", listen, "--data-dir", dataDir, "--nats-url", c.url, "--node-id", id, "--upstream", c.up.URL,
		"--bundle-public-key", c.bundlePub, "--beacon-public-key", c.beaconPub,
		"--bundle-reconcile-interval", "2s", "--log-level", "debug",
	}, extra...)
	n := &node{t: t, URL: "http://" + listen, args: args, logs: &syncBuffer{}, exited: make(chan struct{})}
	n.cmd = exec.Command(binary(t, "verifierd"), args...)
	n.cmd.Stdout, n.cmd.Stderr = n.logs, n.logs
	n.cmd.Env = append(os.Environ(), "TPCLUSTER_NODE_ID=", "TPCLUSTER_TRUST_MATERIAL=", "TPCLUSTER_POLICY_BUNDLE=")
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.cmd.Wait(); close(n.exited) }()
	t.Cleanup(func() {
		n.stop()
		if t.Failed() {
			t.Logf("verifierd %s log:\n%s", id, n.logs.String())
		}
	})
	path := "/_tp/healthz"
	if wantReady {
		path = "/_tp/readyz"
	}
	waitFor(t, 60*time.Second, "verifierd "+id+" "+path, func() error {
		select {
		case <-n.exited:
			return fmt.Errorf("verifierd exited: %s", n.logs.String())
		default:
		}
		resp, err := http.Get(n.URL + path)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	return n
}

// client is a caller other than the world's: its own key, kid and subject.
type client struct {
	key     *signer.Key
	kid     string
	subject string
}

// request signs a GET of path on n for routeID as cl, with a fresh passport.
func (cl client) request(t testing.TB, n *node, path, routeID string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", n.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Body, req.ContentLength = http.NoBody, 0
	tok, err := cl.key.MintPassport(signer.PassportOptions{
		Issuer: wIssuer, Subject: cl.subject, Audience: wAudience, TrustDomain: wDomain, KID: cl.kid,
		IssuedAt: time.Now(), TTL: 5 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := cl.key.Sign(tok, &signer.Request{
		Method: "GET", Scheme: req.URL.Scheme, Authority: req.URL.Host, Path: req.URL.EscapedPath(),
		Headers: []transcript.Header{}, RouteID: routeID,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range s.Headers {
		req.Header.Set(h.Name, h.Value)
	}
	return req
}

// outcome is "200" or the deny reason.
func outcome(t testing.TB, c *http.Client, req *http.Request) string {
	t.Helper()
	a := send(t, c, req)
	if a.status == 200 {
		return "200"
	}
	return fmt.Sprintf("%d %s", a.status, a.reason())
}

// status runs bundlepub status --json.
type nodeStatus struct {
	NodeID         string   `json:"node_id"`
	Loaded         bool     `json:"loaded"`
	PolicySequence int64    `json:"policy_sequence"`
	PolicySHA256   string   `json:"policy_sha256"`
	TrustSequence  int64    `json:"trust_sequence"`
	StaleClasses   []string `json:"stale_classes"`
	ViewAgeSeconds float64  `json:"view_age_seconds"`
}

func (c *channel) status(t testing.TB) []nodeStatus {
	t.Helper()
	out := mustBundlepub(t, "status", "--nats-url", c.url, "--timeout", "1s", "--json")
	var st []nodeStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("bundlepub status --json: %v\n%s", err, out)
	}
	return st
}

// allOn waits until bundlepub status shows n nodes on (trust, policy).
func (c *channel) allOn(t testing.TB, n int, trust, policy int64) time.Duration {
	t.Helper()
	return waitFor(t, 60*time.Second, fmt.Sprintf("%d nodes on (%d, %d)", n, trust, policy), func() error {
		st := c.status(t)
		if len(st) != n {
			return fmt.Errorf("%d replies: %+v", len(st), st)
		}
		for _, s := range st {
			if s.TrustSequence != trust || s.PolicySequence != policy {
				return fmt.Errorf("%s on (%d, %d)", s.NodeID, s.TrustSequence, s.PolicySequence)
			}
		}
		return nil
	})
}

// resign signs an edited document with the world's bundle key.
func (c *channel) resign(t testing.TB, in, out string, seq int) {
	t.Helper()
	mustBundlepub(t, "sign", "--key", filepath.Join(c.dir, "bundle.key"), "--in", in, "--out", out,
		"--sequence", strconv.Itoa(seq), "--issued-at", "now")
}

// metric returns the sum of a Prometheus metric's samples whose labels
// contain label, from a node's /_tp/metrics.
func metric(t testing.TB, n *node, name, label string) float64 {
	t.Helper()
	resp, err := http.Get(n.URL + "/_tp/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? ([0-9.eE+-]+)$`)
	var sum float64
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		if strings.Contains(m[1], label) {
			v, _ := strconv.ParseFloat(m[2], 64)
			sum += v
		}
	}
	return sum
}

// signedPolicy signs doc with a key of its own (kid "intruder"), for the
// unknown-key case.
func signedByIntruder(t testing.TB, doc []byte) []byte {
	t.Helper()
	k, err := keyfile.Generate("intruder")
	if err != nil {
		t.Fatal(err)
	}
	out, err := bundle.Sign(doc, bundle.NewSigningKey(k), "local://intruder")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBundleFleet: three nodes in NATS mode on one nats-server. A new
// client is denied passport_key_unknown, then merge-source, sign and publish
// admit it on every node without a restart (the time from publish to
// allowed everywhere is logged); rollbacks by publish and by a direct put,
// and a document signed by an unknown key, change nothing; bundlepub status
// shows the fleet converged; a bundle published after a NATS restart
// reaches every node.
func TestBundleFleet(t *testing.T) {
	ext := natstest.StartExternal(t)
	c := newChannel(t, ext.ClientURL(), nil)
	mustBundlepub(t, c.publishArgs()...)
	var nodes []*node
	for i := range 3 {
		nodes = append(nodes, c.startKVNode(t, fmt.Sprintf("node-%d", i), "", true))
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	for _, n := range nodes {
		if got := outcome(t, hc, c.signed(t, "GET", n.URL+"/v1/orders/1", "orders.get", nil)); got != "200" {
			t.Fatalf("known client on %s = %s, want 200", n.URL, got)
		}
	}

	key, err := signer.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	newcomer := client{key: key, kid: "caller-2", subject: "spiffe://e2e.local/workload/newcomer"}
	oldTrust, oldPolicy := filepath.Join(c.dir, "trust-1.json"), filepath.Join(c.dir, "policy-1.json")
	copyFile(t, c.trust, oldTrust)
	copyFile(t, c.policy, oldPolicy)

	t.Run("add a client", func(t *testing.T) {
		for _, n := range nodes {
			if got := outcome(t, hc, newcomer.request(t, n, "/v1/orders/2", "orders.get")); got != "401 passport_key_unknown" {
				t.Fatalf("new client before publish on %s = %s, want 401 passport_key_unknown", n.URL, got)
			}
		}
		mustBundlepub(t, "merge-source", "--policy", c.policy, "--trust", c.trust,
			"--issuer", wIssuer, "--trust-domain", wDomain, "--kid", newcomer.kid,
			"--public-key-b64", newcomer.key.PublicKeyB64(), "--subject-exact", newcomer.subject,
			"--route", "orders.get", "--out-policy", c.policy, "--out-trust", c.trust)
		c.resign(t, c.trust, c.trust, 2)
		c.resign(t, c.policy, c.policy, 2)

		start := time.Now()
		out := mustBundlepub(t, c.publishArgs()...)
		published := time.Since(start)
		allowed := make([]time.Duration, len(nodes))
		for i, n := range nodes {
			waitFor(t, 30*time.Second, "new client allowed on "+n.URL, func() error {
				if got := outcome(t, hc, newcomer.request(t, n, "/v1/orders/3", "orders.get")); got != "200" {
					return errors.New(got)
				}
				allowed[i] = time.Since(start)
				return nil
			})
		}
		t.Logf("add a client: bundlepub publish took %s; new client allowed after %v on nodes 0..2 (from the start of publish)\n%s",
			published.Round(time.Millisecond), roundAll(allowed), out)
		c.allOn(t, 3, 2, 2)
		table := mustBundlepub(t, "status", "--nats-url", c.url, "--timeout", "1s")
		if !strings.Contains(table, "converged: 3 nodes on policy bundle 2") {
			t.Errorf("bundlepub status table:\n%s\nwant converged on 2", table)
		}
		t.Logf("bundlepub status:\n%s", table)
	})

	kv := natstest.JetStream(t, natstest.Connect(t, c.url))
	bucket, err := kv.KeyValue(t.Context(), "TRUSTPLANE_BUNDLES")
	if err != nil {
		t.Fatal(err)
	}
	unchanged := func(t *testing.T, what string) {
		t.Helper()
		c.allOn(t, 3, 2, 2)
		for _, n := range nodes {
			if got := outcome(t, hc, newcomer.request(t, n, "/v1/orders/4", "orders.get")); got != "200" {
				t.Errorf("after %s, new client on %s = %s, want 200", what, n.URL, got)
			}
		}
	}
	rejected := func(n *node, kind string) float64 {
		return metric(t, n, "tpcluster_bundle_rejected_total", `kind="`+kind+`"`)
	}

	t.Run("rollback by publish refused", func(t *testing.T) {
		code, out, errs := bundlepub(t, "publish", "--nats-url", c.url, "--trust-material", oldTrust,
			"--policy-bundle", oldPolicy, "--bundle-public-key", c.bundlePub)
		if code != 1 || !strings.Contains(errs, "rollback refused") {
			t.Fatalf("publish of sequence 1 over 2 = exit %d\nstdout: %s\nstderr: %s\nwant exit 1, rollback refused", code, out, errs)
		}
		t.Logf("publish of the old files: %s", strings.TrimSpace(errs))
		unchanged(t, "a refused publish")
	})

	t.Run("rollback by direct put refused", func(t *testing.T) {
		before := make([]float64, len(nodes))
		for i, n := range nodes {
			before[i] = rejected(n, "policy_bundle")
		}
		old, err := os.ReadFile(oldPolicy)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bucket.Put(t.Context(), "policy-bundle", old); err != nil {
			t.Fatal(err)
		}
		for i, n := range nodes {
			waitFor(t, 30*time.Second, "rollback counted on "+n.URL, func() error {
				if got := rejected(n, "policy_bundle"); got <= before[i] {
					return fmt.Errorf("rejected %v", got)
				}
				return nil
			})
			if !strings.Contains(n.logs.String(), "rollback refused") {
				t.Errorf("node %d did not report the rollback in its log", i)
			}
		}
		unchanged(t, "a rollback put into the bucket")
	})

	t.Run("unknown signing key refused", func(t *testing.T) {
		doc, err := os.ReadFile(c.policy)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(doc, &m); err != nil {
			t.Fatal(err)
		}
		m["sequence"] = 99
		raw, _ := json.Marshal(m)
		forged := signedByIntruder(t, raw)
		forgedPath := filepath.Join(c.dir, "policy-forged.json")
		if err := os.WriteFile(forgedPath, forged, 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, errs := bundlepub(t, "publish", "--nats-url", c.url, "--trust-material", c.trust,
			"--policy-bundle", forgedPath, "--bundle-public-key", c.bundlePub)
		if code != 1 || !strings.Contains(errs, "not accepted") {
			t.Errorf("publish of a forged bundle = exit %d: %s; want exit 1, key not accepted", code, errs)
		}
		before := make([]float64, len(nodes))
		for i, n := range nodes {
			before[i] = rejected(n, "policy_bundle")
		}
		if _, err := bucket.Put(t.Context(), "policy-bundle", forged); err != nil {
			t.Fatal(err)
		}
		for i, n := range nodes {
			waitFor(t, 30*time.Second, "forged bundle counted on "+n.URL, func() error {
				if got := rejected(n, "policy_bundle"); got <= before[i] {
					return fmt.Errorf("rejected %v", got)
				}
				return nil
			})
		}
		unchanged(t, "a bundle signed by an unknown key")
	})

	t.Run("watch survives a NATS restart", func(t *testing.T) {
		ext.Stop()
		ext.Start()
		restarted := time.Now()
		c.resign(t, c.trust, c.trust, 3)
		c.resign(t, c.policy, c.policy, 3)
		waitFor(t, 30*time.Second, "publish after the restart", func() error {
			code, out, errs := bundlepub(t, c.publishArgs()...)
			if code != 0 {
				return fmt.Errorf("exit %d: %s %s", code, out, errs)
			}
			return nil
		})
		published := time.Since(restarted)
		took := c.allOn(t, 3, 3, 3)
		t.Logf("NATS restart: publish succeeded %s after the restart; all 3 nodes on sequence 3 %s after that",
			published.Round(time.Millisecond), took.Round(time.Millisecond))
	})
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// TestBundleFreshness: with bundlepub stopped, a realtime route denies
// stale_bundle_fail_closed once the realtime window passes, a bounded route
// keeps allowing until its max_staleness_seconds, an offline-ok route keeps
// allowing; restarting bundlepub with the same files puts nothing and its
// beacons make every route fresh again (SPEC §8.3).
func TestBundleFreshness(t *testing.T) {
	const (
		realtimeWindow = 3 * time.Second
		boundedMax     = 8 // seconds
		beaconEvery    = 500 * time.Millisecond
	)
	ext := natstest.StartExternal(t)
	c := newChannel(t, ext.ClientURL(), func(w *world, policy map[string]any) {
		groups := policy["route_groups"].([]any)
		g := groups[0].(map[string]any)
		g["routes"] = append(g["routes"].([]any),
			w.route("fresh.realtime", "GET", "/v1/rt/{id}", map[string]any{"freshness_class": "realtime"}),
			w.route("fresh.bounded", "GET", "/v1/bounded/{id}", map[string]any{"freshness_class": "bounded", "max_staleness_seconds": boundedMax}),
		)
	})
	pub := c.startPublisher(t, beaconEvery)
	n := c.startKVNode(t, "node-fresh", "", true, "--realtime-window", realtimeWindow.String())
	hc := &http.Client{Timeout: 30 * time.Second}
	seq := 0
	try := func(path, route string) string {
		seq++
		return outcome(t, hc, c.signed(t, "GET", fmt.Sprintf("%s%s/%d", n.URL, path, seq), route, nil))
	}
	routes := []struct{ path, id string }{{"/v1/rt", "fresh.realtime"}, {"/v1/bounded", "fresh.bounded"}, {"/v1/orders", "orders.get"}}
	allFresh := func() error {
		for _, r := range routes {
			if got := try(r.path, r.id); got != "200" {
				return fmt.Errorf("%s = %s", r.id, got)
			}
		}
		return nil
	}
	waitFor(t, 30*time.Second, "every route allowed while beacons flow", allFresh)

	pub.stop(t)
	stopped := time.Now()
	var realtimeStale, boundedStale time.Duration
	waitFor(t, 60*time.Second, "bounded route stale", func() error {
		rt, bd, off := try("/v1/rt", "fresh.realtime"), try("/v1/bounded", "fresh.bounded"), try("/v1/orders", "orders.get")
		since := time.Since(stopped)
		if off != "200" {
			t.Fatalf("offline-ok route %s after beacons stopped = %s, want 200", since, off)
		}
		if realtimeStale == 0 && rt != "200" {
			if rt != "503 stale_bundle_fail_closed" {
				t.Fatalf("realtime route = %s, want 503 stale_bundle_fail_closed", rt)
			}
			realtimeStale = since
		}
		if bd == "200" {
			if realtimeStale != 0 && since > boundedMax*time.Second+2*time.Second {
				t.Fatalf("bounded route still allowed %s after beacons stopped (max_staleness_seconds %d)", since, boundedMax)
			}
			return errors.New("bounded still fresh")
		}
		if bd != "503 stale_bundle_fail_closed" {
			t.Fatalf("bounded route = %s, want 503 stale_bundle_fail_closed", bd)
		}
		boundedStale = since
		return nil
	})
	if realtimeStale == 0 || realtimeStale < realtimeWindow-beaconEvery || boundedStale < boundedMax*time.Second-beaconEvery || boundedStale <= realtimeStale {
		t.Errorf("stale after: realtime %s (window %s), bounded %s (max %ds)", realtimeStale, realtimeWindow, boundedStale, boundedMax)
	}
	t.Logf("beacons stopped: realtime route denied stale_bundle_fail_closed after %s (window %s), bounded after %s (max %ds), offline-ok allowed throughout",
		realtimeStale.Round(time.Millisecond), realtimeWindow, boundedStale.Round(time.Millisecond), boundedMax)

	kv := natstest.JetStream(t, natstest.Connect(t, c.url))
	bucket, err := kv.KeyValue(t.Context(), "TRUSTPLANE_BUNDLES")
	if err != nil {
		t.Fatal(err)
	}
	revBefore := revisions(t, bucket)
	restarted := time.Now()
	pub = c.startPublisher(t, beaconEvery)
	if out := pub.out.String(); strings.Count(out, "unchanged: these bytes are already published") != 2 {
		t.Errorf("restarted bundlepub output:\n%s\nwant both documents unchanged", out)
	}
	took := waitFor(t, 30*time.Second, "every route allowed after beacons resume", allFresh)
	if after := revisions(t, bucket); after != revBefore {
		t.Errorf("document revisions %v after restarting bundlepub with the same files, want %v (no put)", after, revBefore)
	}
	t.Logf("bundlepub restarted with the same files: no put; every route fresh %s after its start (%s after the restart call)",
		took.Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
}

// revisions returns the revisions of the two documents in the bucket.
func revisions(t testing.TB, kv interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
}) [2]uint64 {
	t.Helper()
	var out [2]uint64
	for i, key := range []string{"trust-material", "policy-bundle"} {
		e, err := kv.Get(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = e.Revision()
	}
	return out
}

// TestBundleNodeStartsWhileNATSDown: a node restarted while NATS is down
// decides from its verified disk cache (replay_ledger_unavailable, not
// bundle_policy_missing) and allows as soon as NATS answers (SPEC §8.2).
func TestBundleNodeStartsWhileNATSDown(t *testing.T) {
	ext := natstest.StartExternal(t)
	c := newChannel(t, ext.ClientURL(), nil)
	mustBundlepub(t, c.publishArgs()...)
	dataDir := t.TempDir()
	first := c.startKVNode(t, "node-cache", dataDir, true)
	hc := &http.Client{Timeout: 30 * time.Second}
	if got := outcome(t, hc, c.signed(t, "GET", first.URL+"/v1/orders/a", "orders.get", nil)); got != "200" {
		t.Fatalf("before the outage = %s", got)
	}
	first.stop()

	ext.Stop()
	n := c.startKVNode(t, "node-cache", dataDir, false)
	for i := range 3 {
		got := outcome(t, hc, c.signed(t, "GET", fmt.Sprintf("%s/v1/orders/down-%d", n.URL, i), "orders.get", nil))
		if got != "503 replay_ledger_unavailable" {
			t.Fatalf("node started while NATS is down = %s, want 503 replay_ledger_unavailable (decided from the cached pair)", got)
		}
	}
	a := send(t, hc, mustRequest(t, "GET", n.URL+"/_tp/readyz"))
	if a.status != 503 || !strings.Contains(string(a.body), `"sequence":1`) {
		t.Errorf("readyz while NATS is down = %d %s, want 503 listing the cached pair", a.status, a.body)
	}
	t.Logf("NATS down: readyz %d %s", a.status, a.body)

	ext.Start()
	i := 0
	took := waitFor(t, 60*time.Second, "allowed once NATS answers", func() error {
		i++
		if got := outcome(t, hc, c.signed(t, "GET", fmt.Sprintf("%s/v1/orders/up-%d", n.URL, i), "orders.get", nil)); got != "200" {
			return errors.New(got)
		}
		return nil
	})
	t.Logf("node started from its cache while NATS was down: first allow %s after NATS came back (%d attempts)", took.Round(time.Millisecond), i)
}

func mustRequest(t testing.TB, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
