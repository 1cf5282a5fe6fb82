package e2e

// The one harness for e2e deployments: the processes a test starts
// (verifierd, bundlepub, nginx) and the fleet they form on NATS.

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testport"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// proc is a process a test started.
type proc struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	logs   *syncBuffer   // its stdout and stderr
	exited chan struct{} // closed when it has exited
	sig    os.Signal     // what stop sends
}

// startProc runs path with args, env added to the test's environment. On
// cleanup it is stopped (sig, then SIGKILL and a failure 20 s later) and,
// if the test failed, its output is logged.
func startProc(t testing.TB, name, path string, args, env []string, sig os.Signal) *proc {
	t.Helper()
	p := &proc{t: t, name: name, logs: &syncBuffer{}, exited: make(chan struct{}), sig: sig}
	p.cmd = exec.Command(path, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.Env = append(os.Environ(), env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.logs.String())
		}
	})
	return p
}

// stop sends the stop signal unless the process has exited and waits for
// it, killing it and failing the test if it is still running 20 s later.
func (p *proc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(p.sig)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		p.t.Errorf("%s did not stop within 20s of %v", p.name, p.sig)
	}
}

// running is nil while the process runs, for polls that must not wait out
// their deadline on a process that already failed.
func (p *proc) running() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited: %s", p.name, p.logs.String())
	default:
		return nil
	}
}

// waitHTTP polls url until it answers 200, or any status with anyStatus.
func (p *proc) waitHTTP(t testing.TB, timeout time.Duration, url string, anyStatus bool) {
	t.Helper()
	testwait.Until(t, timeout, p.name+" "+url, func() error {
		if err := p.running(); err != nil {
			return err
		}
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 && !anyStatus {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

// node is a running verifierd.
type node struct {
	*proc
	URL string
}

// spawnVerifierd starts verifierd listening on listen with args. env clears
// the TPCLUSTER_* variables that would add to them, so flags alone decide.
func spawnVerifierd(t testing.TB, listen string, args, env []string) *node {
	t.Helper()
	return &node{startProc(t, "verifierd "+listen, binary(t, "verifierd"), args, env, syscall.SIGTERM), "http://" + listen}
}

// runBinary runs cmd/<name> with args to completion, TPCLUSTER_NATS_URL
// cleared so flags alone decide, and returns its exit code and output.
func runBinary(t testing.TB, name string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(binary(t, name), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "TPCLUSTER_NATS_URL=")
	err := cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode(), out.String(), errb.String()
	}
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return 0, out.String(), errb.String()
}

// waitUp waits until /_tp/readyz answers 200 or, with ready false, until
// /_tp/healthz does.
func (n *node) waitUp(t testing.TB, ready bool) {
	t.Helper()
	path := "/_tp/healthz"
	if ready {
		path = "/_tp/readyz"
	}
	n.waitHTTP(t, 60*time.Second, n.URL+path, false)
}

// startVerifierd starts verifierd in file mode for w with extra flags
// (last, so they win) and waits until /_tp/readyz answers 200 (or, with
// wantReady false, /_tp/healthz). Without --nats-url or --nats-listen in
// extra it embeds its own NATS server on a free port.
func startVerifierd(t testing.TB, w *world, wantReady bool, extra ...string) *node {
	t.Helper()
	// Both ports at once, so the node's two listeners never get the same one.
	addrs := testport.Addrs(t, 2)
	args := append([]string{
		"--listen", addrs[0], "--data-dir", t.TempDir(),
		"--trust-material", w.trust, "--policy-bundle", w.policy, "--bundle-public-key", w.bundlePub,
		"--log-level", "debug",
	}, extra...)
	if !hasFlag(extra, "--nats-url") && !hasFlag(extra, "--nats-listen") {
		args = append(args, "--nats-listen", addrs[1])
	}
	args = append(args, w.auditKeyArgs(extra)...)
	n := spawnVerifierd(t, addrs[0], args, []string{"TPCLUSTER_NODE_ID="})
	n.waitUp(t, wantReady)
	return n
}

// auditKeyArgs returns --audit-key with the world's key for the node id in
// args, if the world lists that node and args name no key.
func (w *world) auditKeyArgs(args []string) []string {
	if hasFlag(args, "--audit-key") {
		return nil
	}
	for i, a := range args {
		if a == "--node-id" && i+1 < len(args) && w.auditKeys[args[i+1]] != "" {
			return []string{"--audit-key", w.auditKeys[args[i+1]]}
		}
	}
	return nil
}

func hasFlag(args []string, f string) bool {
	for _, a := range args {
		if a == f || strings.HasPrefix(a, f+"=") {
			return true
		}
	}
	return false
}

// channel is what a fleet's nodes share: a signed world, the NATS it runs
// on (the bundle channel of SPEC §8), a test upstream and beacon keys.
type channel struct {
	*world
	url       string             // every server's client URL, comma-separated
	ext       *natstest.External // with fleetOpts.external: stop and start it
	up        *upstream
	beaconKey string // beacon.key
	beaconPub string // beacon.pub
}

// fleetOpts says what NATS a fleet runs on.
type fleetOpts struct {
	servers  int                                   // in-process servers: 1 is natstest.Server, more a natstest.Cluster
	external bool                                  // instead one nats-server process the test can stop and start (channel.ext)
	edit     func(w *world, policy map[string]any) // a last edit of the policy before it is signed
	// auditNodes get audit keys the trust material lists (newWorld); a
	// node started with one of these ids signs its audit trail.
	auditNodes []string
}

// newFleet starts the NATS side of a fleet and returns its channel; the
// test adds nodes (start, startN), bundlepub publishes (publishArgs,
// startPublisher). Everything stops on cleanup.
func newFleet(t testing.TB, o fleetOpts) *channel {
	t.Helper()
	var url string
	var ext *natstest.External
	switch {
	case o.external:
		ext = natstest.StartExternal(t)
		url = ext.ClientURL()
	case o.servers == 1:
		url = natstest.Server(t).ClientURL()
	case o.servers > 1:
		url = strings.Join(natstest.URLs(natstest.Cluster(t, o.servers)), ",")
	default:
		t.Fatalf("newFleet: want servers >= 1 or external, got %+v", o)
	}
	c := newChannel(t, url, o.edit, o.auditNodes...)
	c.ext = ext
	return c
}

// newChannel is a fleet's channel on NATS servers the test started itself
// (a supercluster region, say) at url.
func newChannel(t testing.TB, url string, edit func(w *world, policy map[string]any), auditNodes ...string) *channel {
	t.Helper()
	w := newWorldWith(t, edit, auditNodes...)
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

// nodeOpts configures one verifierd of a fleet.
type nodeOpts struct {
	id      string // --node-id; empty leaves verifierd's default (<hostname>:<port>)
	dataDir string // empty is a fresh one; the same one across restarts keeps the spool and bundle cache
	files   bool   // bundles from the world's files; otherwise from the NATS channel
	unready bool   // return once /_tp/healthz answers, not /_tp/readyz
	flags   []string
}

// start starts one verifierd in proxy mode on c's NATS and upstream and
// waits until it is up (nodeOpts.unready). o.flags come last, so they win.
func (c *channel) start(t testing.TB, o nodeOpts) *node {
	t.Helper()
	n := c.spawn(t, o)
	n.waitUp(t, !o.unready)
	return n
}

// startN starts count nodes as start does, ids o.id-0 .. o.id-<count-1>
// ("node-" without an id), all at once, and waits until each is up.
func (c *channel) startN(t testing.TB, count int, o nodeOpts) []*node {
	t.Helper()
	prefix := cmp.Or(o.id, "node")
	nodes := make([]*node, count)
	for i := range nodes {
		oi := o
		oi.id = fmt.Sprintf("%s-%d", prefix, i)
		nodes[i] = c.spawn(t, oi)
	}
	for _, n := range nodes {
		n.waitUp(t, !o.unready)
	}
	return nodes
}

func (c *channel) spawn(t testing.TB, o nodeOpts) *node {
	t.Helper()
	listen := testport.Addrs(t, 1)[0]
	args := []string{"--listen", listen, "--data-dir", cmp.Or(o.dataDir, t.TempDir()), "--nats-url", c.url,
		"--upstream", c.up.URL, "--bundle-public-key", c.bundlePub, "--log-level", "debug"}
	if o.id != "" {
		args = append(args, "--node-id", o.id)
	}
	if o.files {
		args = append(args, "--trust-material", c.trust, "--policy-bundle", c.policy)
	} else {
		args = append(args, "--beacon-public-key", c.beaconPub, "--bundle-reconcile-interval", "2s")
	}
	env := []string{"TPCLUSTER_NODE_ID=", "TPCLUSTER_TRUST_MATERIAL=", "TPCLUSTER_POLICY_BUNDLE="}
	args = append(args, o.flags...)
	return spawnVerifierd(t, listen, append(args, c.auditKeyArgs(args)...), env)
}

// startKVNode starts verifierd in NATS bundle mode: start with an id,
// data dir and flags.
func (c *channel) startKVNode(t testing.TB, id, dataDir string, wantReady bool, extra ...string) *node {
	t.Helper()
	return c.start(t, nodeOpts{id: id, dataDir: dataDir, unready: !wantReady, flags: extra})
}

// publishArgs are the arguments of bundlepub publish for the channel's
// files, without beacons (it publishes once and exits), plus extra.
func (c *channel) publishArgs(extra ...string) []string {
	return append([]string{"publish", "--nats-url", c.url, "--trust-material", c.trust,
		"--policy-bundle", c.policy, "--bundle-public-key", c.bundlePub}, extra...)
}

// startPublisher runs bundlepub publish with beacons every interval until
// stop or the end of the test, and waits until its first publish is done.
func (c *channel) startPublisher(t testing.TB, interval time.Duration) *proc {
	t.Helper()
	args := c.publishArgs("--beacon-key", c.beaconKey, "--beacon-interval", interval.String())
	p := startProc(t, "bundlepub publish", binary(t, "bundlepub"), args, []string{"TPCLUSTER_NATS_URL="}, syscall.SIGTERM)
	testwait.Until(t, 30*time.Second, "bundlepub publish running", func() error {
		if err := p.running(); err != nil {
			return err
		}
		if !strings.Contains(p.logs.String(), "publishing: beacons every") {
			return errors.New("not yet")
		}
		return nil
	})
	return p
}
