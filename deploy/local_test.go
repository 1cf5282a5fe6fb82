// Package deploy holds the tests of what deploy/ ships: deploy/local brings
// a real cluster up and down, the Kustomize manifests and the Dockerfile name
// only flags, variables and binaries that exist.
package deploy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/demo"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/natsauth"
	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/signer"
	"github.com/tpcluster/tpcluster/internal/testport"
	"github.com/tpcluster/tpcluster/internal/testwait"

	"github.com/tpcluster/tpcluster/internal/conformance"
)

// TestLocalUpDown runs deploy/local/up.sh, sends a signed request through
// nginx (allowed) and the same request again (409 jti_replay with the SPEC
// §6 body), does the same with a body through the proxy-mode gateway, reads
// each decision's audit event back from TRUSTPLANE_AUDIT (R3) and runs
// `tpaudit verify` (every chain whole), runs down.sh and checks that no
// process up.sh started is left.
// localPortOffsets are the offsets from TPLOCAL_BASE_PORT that
// deploy/local/lib.sh uses.
var localPortOffsets = []int{0, 1, 2, 11, 12, 13, 21, 22, 23, 31, 32, 33, 41, 42, 43}

func TestLocalUpDown(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: builds the binaries and runs nine processes; CI runs it")
	}
	requireNginx(t)
	root := conformance.ModuleRoot(t)
	dir := t.TempDir()
	env := append(os.Environ(),
		"TPLOCAL_BASE_PORT="+strconv.Itoa(testport.Block(t, localPortOffsets...)),
		"TPLOCAL_TIMEOUT=240", // a loaded two-core CI machine
		"TPLOCAL_GRACE=20",
	)
	script := func(name string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 8*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(root, "deploy", "local", name), append([]string{"--dir", dir}, args...)...)
		cmd.Env = env
		cmd.Dir = root
		cmd.WaitDelay = 10 * time.Second // a stray child holding our pipe must not hang the test
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	// Registered before up, so a failed up or a failing check still stops
	// everything (down is idempotent).
	t.Cleanup(func() {
		if out, err := script("down.sh"); err != nil {
			t.Errorf("cleanup down.sh: %v\n%s", err, out)
		}
		if t.Failed() {
			logTail(t, filepath.Join(dir, "logs"))
		}
	})

	out, err := script("up.sh")
	if err != nil {
		t.Fatalf("up.sh: %v\n%s", err, out)
	}
	t.Logf("up.sh:\n%s", out)
	for _, want := range []string{"tpcurl --key", "--route-id orders.get", "down.sh --dir " + dir} {
		if !strings.Contains(out, want) {
			t.Errorf("up.sh output lacks %q", want)
		}
	}
	st := readEnv(t, filepath.Join(dir, "env"))
	t.Logf("bundles: %s mode", st["TPLOCAL_BUNDLES"])
	groups := readPIDs(t, filepath.Join(dir, "pids"))
	for _, name := range []string{"nats-1", "nats-2", "nats-3", "verifierd-1", "verifierd-2", "verifierd-3", "demoapi", "nginx"} {
		if _, ok := groups[name]; !ok {
			t.Errorf("no PID file for %s", name)
		}
	}

	// Each node's assertion key is in a directory of its own
	// (--assertion-key-dir, docs/BACKEND-JWT.md), 0600, so the local fleet
	// rotates its keys without a restart; the assertions checked below are
	// signed with it.
	for _, i := range []string{"1", "2", "3"} {
		keyDir := filepath.Join(dir, "data", "verifierd-"+i, "assertion-keys")
		if fi, err := os.Stat(filepath.Join(keyDir, "assertion-local-"+i+".key")); err != nil {
			t.Error(err)
		} else if fi.Mode().Perm() != 0o600 {
			t.Errorf("verifierd-%s assertion key mode = %v, want 0600", i, fi.Mode().Perm())
		}
		logged, err := os.ReadFile(filepath.Join(dir, "logs", "verifierd-"+i+".log"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(logged), "assertion_key_dir="+keyDir) {
			t.Errorf("verifierd-%s did not start with --assertion-key-dir %s", i, keyDir)
		}
	}

	keyPath := st["TPLOCAL_CALLER_KEY"]
	if fi, err := os.Stat(keyPath); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode = %v, want 0600", keyPath, fi.Mode().Perm())
	}
	kf, err := keyfile.ReadPrivate(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	key, err := signer.NewKey(kf.Seed())
	if err != nil {
		t.Fatal(err)
	}

	world := demoWorld(t, dir)

	again, err := script("up.sh")
	if err == nil || !strings.Contains(again, "already running") {
		t.Errorf("second up.sh = %v, want a refusal naming the running cluster\n%s", err, again)
	}

	tests := []struct {
		name    string
		gateway string
		route   string
		method  string
		path    string
		body    string
	}{
		{"auth_request GET", st["TPLOCAL_GATEWAY_URL"], "orders.get", "GET", "/v1/orders/ord_42", ""},
		{"proxy mode POST", st["TPLOCAL_PROXY_GATEWAY_URL"], "orders.create", "POST", "/v1/orders", `{"order_id":"ord_42"}`},
	}
	client := &http.Client{Timeout: 30 * time.Second}
	var replayIDs []string // request ids of the replays, denied jti_replay
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := demo.NewRequest(t.Context(), key, demo.Passport(kf.KID()), tt.route, tt.method,
				tt.gateway+tt.path, []byte(tt.body), nil)
			if err != nil {
				t.Fatal(err)
			}
			first := do(t, client, req, tt.body)
			if first.status != http.StatusOK {
				t.Fatalf("first %s %s = %d %s, want 200", tt.method, tt.path, first.status, first.body)
			}
			var echo struct {
				Upstream         string
				Target           string
				Headers          map[string]string
				BackendAssertion *struct {
					Verified bool
					Error    string
					Claims   struct {
						Aud     string `json:"aud"`
						RouteID string `json:"route_id"`
						Target  string `json:"target"`
					}
				} `json:"backend_assertion"`
			}
			if err := json.Unmarshal(first.body, &echo); err != nil || echo.Upstream != "tpcluster demo" {
				t.Fatalf("first answer is not the demo upstream's: %s", first.body)
			}
			if echo.Target != tt.path || echo.Headers["X-Trustplane-Route-Id"] != tt.route {
				t.Errorf("upstream saw target %q route %q, want %q %q", echo.Target, echo.Headers["X-Trustplane-Route-Id"], tt.path, tt.route)
			}
			// orders.get asks for a backend assertion (docs/BACKEND-JWT.md):
			// through nginx auth_request too, the demo upstream verified it
			// with the fleet's JWKS. orders.create asks for none.
			ba := echo.BackendAssertion
			switch {
			case tt.route == "orders.get" && (ba == nil || !ba.Verified || ba.Claims.Aud != "orders-backend" ||
				ba.Claims.RouteID != tt.route || ba.Claims.Target != tt.path):
				t.Errorf("upstream's backend assertion = %+v, want verified for %s %s: %s", ba, tt.route, tt.path, first.body)
			case tt.route != "orders.get" && ba != nil && ba.Verified:
				t.Errorf("orders.create got a backend assertion: %s", first.body)
			}

			replay := do(t, client, req, tt.body)
			if replay.status != http.StatusConflict {
				t.Fatalf("replay = %d %s, want 409", replay.status, replay.body)
			}
			id := replay.header.Get("X-Request-Id")
			replayIDs = append(replayIDs, id)
			want := fmt.Sprintf(`{"allowed":false,"reason":"jti_replay","request_id":%q}`, id)
			if id == "" || strings.TrimSpace(string(replay.body)) != want {
				t.Errorf("replay body = %s (X-Request-Id %q), want %s", replay.body, id, want)
			}
			if ct := replay.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("replay Content-Type = %q", ct)
			}
		})
	}

	// Both listeners set the forwarding headers themselves: the caller's
	// X-Forwarded-Host/-Proto must not make a request signed for
	// https://victim.example verify on the plain-HTTP listeners.
	for _, gw := range []string{"TPLOCAL_PROXY_GATEWAY_URL", "TPLOCAL_GATEWAY_URL"} {
		t.Run("forwarding headers are nginx's at "+gw, func(t *testing.T) {
			req, err := demo.NewRequest(t.Context(), key, demo.Passport(kf.KID()), "orders.get", "GET",
				"https://victim.example/v1/orders/ord_43", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(st[gw] + "/v1/orders/ord_43")
			if err != nil {
				t.Fatal(err)
			}
			req.URL, req.Host = u, ""
			req.Header.Set("X-Forwarded-Host", "victim.example")
			req.Header.Set("X-Forwarded-Proto", "https")
			a := do(t, client, req, "")
			if a.status != http.StatusUnauthorized || !strings.Contains(string(a.body), `"reason":"request_binding_mismatch"`) {
				t.Errorf("request signed for https://victim.example at %s = %d %s, want 401 request_binding_mismatch", st[gw], a.status, a.body)
			}
		})
	}

	checkLocalAudit(t, st, []string{"orders.get", "orders.create"}, replayIDs)
	t.Run("NATS locked", func(t *testing.T) { checkNATSLocked(t, st) })

	if out, err := script("down.sh"); err != nil {
		t.Fatalf("down.sh: %v\n%s", err, out)
	}
	if left := leftovers(t, dir, groups); len(left) > 0 {
		t.Errorf("processes left after down.sh:\n%s", strings.Join(left, "\n"))
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "pids")); len(entries) > 0 {
		t.Errorf("down.sh left %d PID files", len(entries))
	}

	// A second up over the same DIR keeps the demo world: the
	// same signed bytes, so the same sequence and digests, served by the
	// nodes, and the same caller key still admitted.
	out, err = script("up.sh")
	if err != nil {
		t.Fatalf("second up.sh after down.sh: %v\n%s", err, out)
	}
	if !strings.Contains(out, "keeping the keys and signed bundles") {
		t.Errorf("second up.sh does not say it kept the keys:\n%s", out)
	}
	if got := demoWorld(t, dir); got != world {
		t.Errorf("second up.sh changed the demo world:\n got %+v\nwant %+v", got, world)
	}
	t.Logf("second up.sh kept sequence %d, trust material sha256 %s, policy sha256 %s", world.sequence, world.trustSHA256, world.policySHA256)
	st = readEnv(t, filepath.Join(dir, "env"))
	if st["TPLOCAL_BUNDLES"] == "nats" {
		// The nodes took the kept pair from the bucket: their applied
		// sequence is the files' (a regenerated world would be higher).
		for _, v := range strings.Split(st["TPLOCAL_VERIFIER_URLS"], ",") {
			for _, kind := range []string{"policy_bundle", "trust_material"} {
				if got := scrapeSequence(t, client, v, kind); got != world.sequence {
					t.Errorf("%s applied %s sequence %d, want the kept %d", v, kind, got, world.sequence)
				}
			}
		}
	}
	req, err := demo.NewRequest(t.Context(), key, demo.Passport(kf.KID()), "orders.get", "GET",
		st["TPLOCAL_GATEWAY_URL"]+"/v1/orders/ord_44", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a := do(t, client, req, ""); a.status != http.StatusOK {
		t.Errorf("after the second up.sh, the kept caller key's GET = %d %s, want 200", a.status, a.body)
	}

	// Only --reset makes a new world: new keys, a higher sequence (the
	// demo signs with the current second as its sequence).
	if out, err := script("down.sh"); err != nil {
		t.Fatalf("down.sh before --reset: %v\n%s", err, out)
	}
	oldKey, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	out, err = script("up.sh", "--reset")
	if err != nil {
		t.Fatalf("up.sh --reset: %v\n%s", err, out)
	}
	if !strings.Contains(out, "--reset: deleting") {
		t.Errorf("up.sh --reset does not say it deleted the old world:\n%s", out)
	}
	fresh := demoWorld(t, dir)
	if fresh.sequence <= world.sequence || fresh.policySHA256 == world.policySHA256 || fresh.trustSHA256 == world.trustSHA256 {
		t.Errorf("up.sh --reset kept the old world: got %+v, old %+v", fresh, world)
	}
	if newKey, err := os.ReadFile(keyPath); err != nil || bytes.Equal(newKey, oldKey) {
		t.Errorf("up.sh --reset kept the caller key %s (%v)", keyPath, err)
	}
	t.Logf("up.sh --reset: sequence %d -> %d", world.sequence, fresh.sequence)
}

// world is what up.sh signs into DIR/keys: the bundles' sequence and the
// SHA-256 of each signed file.
type world struct {
	sequence                  int64
	trustSHA256, policySHA256 string
}

func demoWorld(t *testing.T, dir string) world {
	t.Helper()
	var w world
	for _, f := range []struct {
		name string
		sum  *string
	}{{"trust-material.json", &w.trustSHA256}, {"policy-bundle.json", &w.policySHA256}} {
		b, err := os.ReadFile(filepath.Join(dir, "keys", f.name))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		*f.sum = hex.EncodeToString(sum[:])
		var doc struct{ Sequence int64 }
		if err := json.Unmarshal(b, &doc); err != nil || doc.Sequence <= 0 {
			t.Fatalf("%s: sequence %d, %v", f.name, doc.Sequence, err)
		}
		if w.sequence != 0 && w.sequence != doc.Sequence {
			t.Fatalf("%s: sequence %d, the other document's %d", f.name, doc.Sequence, w.sequence)
		}
		w.sequence = doc.Sequence
	}
	return w
}

// bundleSequence matches tpcluster.bundle.sequence in /_tp/metrics.
var bundleSequence = regexp.MustCompile(`(?m)^tpcluster_bundle_sequence\{([^}]*)\} (\S+)$`)

// scrapeSequence reads the sequence of kind that the node at base applied.
func scrapeSequence(t *testing.T, c *http.Client, base, kind string) int64 {
	t.Helper()
	resp, err := c.Get(base + "/_tp/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range bundleSequence.FindAllStringSubmatch(string(b), -1) {
		if strings.Contains(m[1], `kind="`+kind+`"`) {
			v, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				t.Fatalf("%s/_tp/metrics: %s", base, m[0])
			}
			return int64(v)
		}
	}
	t.Fatalf("%s/_tp/metrics has no tpcluster_bundle_sequence{kind=%q}", base, kind)
	return 0
}

// checkNATSLocked: every role's creds file is 0600; NATS refuses a client
// without a credential and a client without TLS (issue 12). checkLocalAudit
// reads the audit stream as the audit-reader role.
func checkNATSLocked(t *testing.T, st map[string]string) {
	natsDir, urls := st["TPLOCAL_NATS_DIR"], st["TPLOCAL_NATS_URLS"]
	if natsDir == "" || urls == "" {
		t.Fatalf("env lacks TPLOCAL_NATS_DIR or TPLOCAL_NATS_URLS: %v", st)
	}
	for _, role := range natsauth.Roles() {
		f := filepath.Join(natsDir, natsauth.CredsFile(role))
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, want mode 0600", f, err)
		}
	}
	ca := &natsx.ClientAuth{CAFile: filepath.Join(natsDir, natsauth.CAFile)}
	if errs := ca.Validate(time.Now()); len(errs) > 0 {
		t.Fatal(errs)
	}
	for name, auth := range map[string]*natsx.ClientAuth{"no credential": ca, "no TLS": {}} {
		nc, err := natsx.ConnectAuth(t.Context(), urls, "intruder", auth, nil)
		if err == nil {
			nc.Close()
			t.Errorf("connect with %s = nil error, want refused", name)
			continue
		}
		if ce, ok := errors.AsType[*natsx.ConnectError](err); !ok || !ce.Permanent() {
			t.Errorf("connect with %s = %v, want a refused TLS or credential", name, err)
		}
	}
}

// requireNginx fails when nginx is missing: .ci/run installs it, and the
// gateway is part of what this test must prove.
func requireNginx(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nginx"); err == nil {
		return
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return
	}
	t.Fatal("nginx not found: install it (apt-get install nginx-light), as .ci/run does")
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

// do sends a copy of req with body, so the same signed bytes can go twice.
func do(t *testing.T, c *http.Client, req *http.Request, body string) answer {
	t.Helper()
	r := req.Clone(t.Context())
	r.Body, r.ContentLength = io.NopCloser(strings.NewReader(body)), int64(len(body))
	if body == "" {
		r.Body = http.NoBody
	}
	resp, err := c.Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

// readEnv reads the KEY=VALUE lines up.sh writes to DIR/env.
func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			m[k] = v
		}
	}
	return m
}

// readPIDs maps each PID file's name to the process group it names (each
// process is its group's leader).
func readPIDs(t *testing.T, dir string) map[string]int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.pid"))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		m[strings.TrimSuffix(filepath.Base(f), ".pid")] = pid
	}
	return m
}

// leftovers lists live processes that belong to one of groups or name dir
// in their executable path or command line. Zombies are not counted: they
// hold nothing, and this machine's init may never reap an orphan.
func leftovers(t *testing.T, dir string, groups map[string]int) []string {
	t.Helper()
	want := map[int]string{}
	for name, pgid := range groups {
		want[pgid] = name
	}
	procs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, p := range procs {
		stat, err := os.ReadFile(filepath.Join(p, "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// Fields after the command name, which may hold spaces: state ppid pgrp.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		pgrp, _ := strconv.Atoi(f[2])
		cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		exe, _ := os.Readlink(filepath.Join(p, "exe"))
		args := strings.ReplaceAll(string(cmdline), "\x00", " ")
		name, inGroup := want[pgrp]
		if inGroup || strings.HasPrefix(exe, dir) || strings.Contains(args, dir) {
			left = append(left, fmt.Sprintf("pid %s group %d (%s): %s", filepath.Base(p), pgrp, name, args))
		}
	}
	return left
}

// logTail logs the end of every log under dir.
func logTail(t *testing.T, dir string) {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		t.Logf("--- %s:\n%s", l, b)
	}
}

// checkLocalAudit reads the cluster's audit stream (it once was never
// created, since its size limit exceeded the servers' max_file_store): it
// is R3, and within a generous deadline holds an allow event for each of
// allowRoutes and the jti_replay deny of each of replayIDs; then `tpaudit
// verify` finds every node's chain whole and every event signed by the node
// keys the trust material in TPLOCAL_KEYS lists (docs/AUDIT.md), as the
// audit-reader role.
func checkLocalAudit(t *testing.T, st map[string]string, allowRoutes, replayIDs []string) {
	t.Helper()
	// As the audit-reader role: the one that reads the stream (issue 12).
	natsURLs, natsDir, keysDir := st["TPLOCAL_NATS_URLS"], st["TPLOCAL_NATS_DIR"], st["TPLOCAL_KEYS"]
	reader := []string{"--nats-creds", filepath.Join(natsDir, natsauth.CredsFile(natsauth.AuditReader)), "--nats-ca", filepath.Join(natsDir, natsauth.CAFile)}
	auth := &natsx.ClientAuth{CredsFile: reader[1], CAFile: reader[3]}
	if errs := auth.Validate(time.Now()); len(errs) > 0 {
		t.Fatal(errs)
	}
	nc, err := natsx.ConnectAuth(t.Context(), natsURLs, "deploy test audit-reader", auth, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	took := testwait.Until(t, 90*time.Second, "every decision's event in "+audit.DefaultStream, func() error {
		if missing := missingEvents(t, js, allowRoutes, replayIDs); len(missing) > 0 {
			return fmt.Errorf("missing %s", strings.Join(missing, "; "))
		}
		return nil
	})
	t.Logf("every decision's event in %s %v after the last request", audit.DefaultStream, took.Round(time.Millisecond))
	stream, err := js.Stream(t.Context(), audit.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if r := stream.CachedInfo().Config.Replicas; r != 3 {
		t.Errorf("audit stream replicas = %d, want 3", r)
	}

	// Each node's first checkpoint follows its first acknowledged event;
	// until all three are in, verify names the node without one.
	var out []byte
	took = testwait.Until(t, 90*time.Second, "tpaudit verify passes", func() error {
		cmd := exec.CommandContext(t.Context(), builtBinary(t, "tpaudit"), append([]string{"verify", "--nats-url", natsURLs,
			"--bundle-public-key", filepath.Join(keysDir, "bundle.pub"),
			"--trust-material", filepath.Join(keysDir, "trust-material.json")}, reader...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		var err error
		if out, err = cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("tpaudit verify: %v\n%s", err, out)
		}
		return nil
	})
	for _, node := range []string{"local-1", "local-2", "local-3"} {
		if !strings.Contains(string(out), `node "`+node+`"`) {
			t.Errorf("tpaudit verify names no chain of %s:\n%s", node, out)
		}
	}
	t.Logf("tpaudit verify passed %v after the events were in:\n%s", took.Round(time.Millisecond), out)
}

// missingEvents lists what the audit stream does not hold yet, or why it
// cannot be read.
func missingEvents(t *testing.T, js jetstream.JetStream, allowRoutes, replayIDs []string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, audit.DefaultStream)
	if err != nil {
		return []string{err.Error()}
	}
	allowed, denied := map[string]bool{}, map[string]bool{}
	state := st.CachedInfo().State
	for seq := state.FirstSeq; seq != 0 && seq <= state.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted
		}
		var e struct {
			Outcome    string `json:"outcome"`
			ReasonCode string `json:"reason_code"`
			RouteID    string `json:"route_id"`
			RequestID  string `json:"request_id"`
		}
		if err := json.Unmarshal(m.Data, &e); err != nil {
			return []string{fmt.Sprintf("message %d: %v", seq, err)}
		}
		switch {
		case e.Outcome == "allow":
			allowed[e.RouteID] = true
		case e.Outcome == "deny" && e.ReasonCode == "jti_replay":
			denied[e.RequestID] = true
		}
	}
	var missing []string
	for _, r := range allowRoutes {
		if !allowed[r] {
			missing = append(missing, "an allow of route "+r)
		}
	}
	for _, id := range replayIDs {
		if !denied[id] {
			missing = append(missing, "the jti_replay deny of request "+id)
		}
	}
	return missing
}
