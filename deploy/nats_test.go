package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/audit"
	"github.com/tpcluster/tpcluster/internal/conformance"
	"github.com/tpcluster/tpcluster/internal/natsauth"
	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testport"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// The streams every verifierd needs (SPEC §7, §8.1, §9).
var wantStreams = []string{"KV_TRUSTPLANE_REPLAY", "KV_TRUSTPLANE_BUNDLES", audit.DefaultStream}

// maxFileStore reads a NATS configuration's max_file_store.
func maxFileStore(t *testing.T, conf []byte) int64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*max_file_store:\s*(\d+)([KMGT]?)\s*$`).FindSubmatch(conf)
	if m == nil {
		t.Fatal("no max_file_store in the NATS configuration")
	}
	n, err := strconv.ParseInt(string(m[1]), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n << map[string]int{"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[string(m[2])]
}

// manifestEnv returns the TPCLUSTER_* values the rendered verifierd
// StatefulSet sets (those from a valueFrom are left out).
func manifestEnv(t *testing.T) map[string]string {
	t.Helper()
	dep := find(t, render(t), "StatefulSet", "tpcluster-verifierd")
	env := map[string]string{}
	for _, c := range dep.Spec.Template.Spec.Containers {
		if !strings.HasPrefix(c.Image, "tpcluster") {
			continue
		}
		for _, e := range c.Env {
			if len(e.ValueFrom) == 0 {
				env[e.Name] = e.Value
			}
		}
	}
	if len(env) == 0 {
		t.Fatal("the verifierd StatefulSet sets no variables")
	}
	return env
}

// TestShippedLimitsAgree: JetStream reserves a stream's max bytes on each
// replica's server and refuses a stream that does not fit max_file_store
// ("insufficient storage"); then verifierd can never publish its audit
// events, the spool fills and the node denies everything. The
// audit stream each shipped setup asks for takes at most half of its
// servers' store, the rest being the ledger's and the bundles'; both NATS
// configurations fsync before acknowledging; and in Kubernetes the ledger,
// bundle and audit replicas all equal the NATS pods.
func TestShippedLimitsAgree(t *testing.T) {
	root := conformance.ModuleRoot(t)
	env := manifestEnv(t)
	pods := *find(t, render(t), "StatefulSet", "tpcluster-nats").Spec.Replicas
	for _, v := range []string{"TPCLUSTER_LEDGER_REPLICAS", "TPCLUSTER_BUNDLE_REPLICAS", "TPCLUSTER_AUDIT_REPLICAS"} {
		if got := env[v]; got != strconv.Itoa(pods) {
			t.Errorf("deploy/k8s/verifierd.yaml: %s=%q, want %d (the NATS pods)", v, got, pods)
		}
	}
	k8sAudit, err := strconv.ParseInt(env["TPCLUSTER_AUDIT_MAX_BYTES"], 10, 64)
	if err != nil {
		t.Fatalf("deploy/k8s/verifierd.yaml: TPCLUSTER_AUDIT_MAX_BYTES: %v", err)
	}
	// deploy/local/up.sh leaves --audit-max-bytes at verifierd's default.
	up, err := os.ReadFile(filepath.Join(root, "deploy", "local", "up.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(up, []byte("audit-max-bytes")) {
		t.Fatal("deploy/local/up.sh sets --audit-max-bytes: check that value here instead of the default")
	}
	localAudit, err := strconv.ParseInt(flagDefault(t, "verifierd", "audit-max-bytes"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		conf  string
		audit int64
	}{
		{"deploy/nats/local.conf", localAudit},
		{"deploy/k8s/nats.conf", k8sAudit},
	} {
		conf, err := os.ReadFile(filepath.Join(root, tc.conf))
		if err != nil {
			t.Fatal(err)
		}
		if store := maxFileStore(t, conf); tc.audit <= 0 || tc.audit > store/2 {
			t.Errorf("%s: max_file_store %d, audit stream max bytes %d: want a positive limit of at most half", tc.conf, store, tc.audit)
		}
		if !regexp.MustCompile(`(?m)^\s*sync_interval:\s*always\s*$`).Match(conf) {
			t.Errorf("%s: no sync_interval: always (docs/OPERATIONS.md, durability)", tc.conf)
		}
	}
}

// flagDefault reads a flag's default from `bin -h`.
func flagDefault(t *testing.T, bin, name string) string {
	t.Helper()
	cmd := exec.Command(builtBinary(t, bin), "-h")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, _ := cmd.CombinedOutput()
	m := regexp.MustCompile(`(?s)\n  -` + regexp.QuoteMeta(name) + ` [a-z0-9]+\n[^\n]*\(default ([^)]+)\)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("%s -h names no default for -%s:\n%s", bin, name, out)
	}
	return string(m[1])
}

// TestK8sNATSCreatesEveryStream runs deploy/k8s/nats.conf in three real
// nats-server processes (go.mod's version) on loopback, with only the
// addresses, the store directory and the Secret's files (a `tpnats init`
// set) changed, then the tpcluster-nats-setup Job's `tpnats setup` with its
// settings (issue 12: only admin creates streams), and a verifierd with the
// StatefulSet's settings as the verifier role (its keys, listener, data
// directory and credential paths aside): the ledger bucket, the bundle
// bucket and the audit stream are all there, R3, the audit stream with the
// manifest's size limit, and the node is ready. The old 10 GiB default is
// refused by the same servers, which is what the test guards against.
func TestK8sNATSCreatesEveryStream(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: runs three nats-server processes and a verifierd; CI runs it")
	}
	root := conformance.ModuleRoot(t)
	conf, err := os.ReadFile(filepath.Join(root, "deploy", "k8s", "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	auth := filepath.Join(t.TempDir(), "nats")
	if err := natsauth.Generate(natsauth.Options{Dir: auth}); err != nil {
		t.Fatal(err)
	}
	ports := testport.Free(t, 7) // 3 client, 3 route, 1 verifierd
	var urls []string
	for i := range 3 {
		dir := t.TempDir()
		c := rewriteK8sNATS(t, conf, ports[i], ports[3+i], ports[3:6], dir, auth)
		path := filepath.Join(dir, "nats.conf")
		if err := os.WriteFile(path, c, 0o600); err != nil {
			t.Fatal(err)
		}
		startProcess(t, fmt.Sprintf("nats-%d", i), []string{"POD_NAME=tpcluster-nats-" + strconv.Itoa(i)},
			builtBinary(t, "nats-server"), "-c", path)
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	admin := &natsx.ClientAuth{CredsFile: filepath.Join(auth, natsauth.CredsFile(natsauth.Admin)), CAFile: filepath.Join(auth, natsauth.CAFile)}
	if errs := admin.Validate(time.Now()); len(errs) > 0 {
		t.Fatal(errs)
	}
	anc, err := natsx.ConnectAuth(t.Context(), strings.Join(urls, ","), "deploy test admin", admin, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(anc.Close)
	js := natstest.JetStream(t, anc)
	testwait.Until(t, 60*time.Second, "a JetStream meta leader", within(t, func(ctx context.Context) error {
		_, err := js.AccountInfo(ctx)
		return err
	}))

	// The admin's Job, with its environment.
	job := find(t, render(t), "Job", "tpcluster-nats-setup")
	jobEnv := map[string]string{}
	for _, e := range job.Spec.Template.Spec.Containers[0].Env {
		jobEnv[e.Name] = e.Value
	}
	jobEnv["TPCLUSTER_NATS_URL"] = strings.Join(urls, ",")
	jobEnv["TPCLUSTER_NATS_CREDS"], jobEnv["TPCLUSTER_NATS_CA"] = admin.CredsFile, admin.CAFile
	if jobEnv["TPCLUSTER_AUDIT_MAX_BYTES"] != manifestEnv(t)["TPCLUSTER_AUDIT_MAX_BYTES"] {
		t.Errorf("the setup Job's TPCLUSTER_AUDIT_MAX_BYTES %s differs from verifierd's %s", jobEnv["TPCLUSTER_AUDIT_MAX_BYTES"], manifestEnv(t)["TPCLUSTER_AUDIT_MAX_BYTES"])
	}
	testwait.Until(t, 90*time.Second, "tpnats setup as the Job runs it", func() error {
		cmd := exec.CommandContext(t.Context(), builtBinary(t, "tpnats"), "setup")
		cmd.Env = envList(jobEnv)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v\n%s", err, out)
		}
		return nil
	})

	// verifierd with the StatefulSet's environment.
	keys := t.TempDir()
	for _, name := range []string{"bundle", "beacon", "audit-0"} {
		out, err := exec.Command(builtBinary(t, "bundlepub"), "keygen", "--out", filepath.Join(keys, name)).CombinedOutput()
		if err != nil {
			t.Fatalf("bundlepub keygen: %v\n%s", err, out)
		}
	}
	env := manifestEnv(t)
	env["TPCLUSTER_NODE_ID"] = "tpcluster-verifierd-0"
	env["TPCLUSTER_NATS_URL"] = strings.Join(urls, ",")
	env["TPCLUSTER_LISTEN"] = fmt.Sprintf("127.0.0.1:%d", ports[6])
	env["TPCLUSTER_DATA_DIR"] = t.TempDir()
	env["TPCLUSTER_BUNDLE_PUBLIC_KEY"] = filepath.Join(keys, "bundle.pub")
	env["TPCLUSTER_BEACON_PUBLIC_KEY"] = filepath.Join(keys, "beacon.pub")
	// What the audit-key init container copies for ordinal 0.
	env["TPCLUSTER_AUDIT_KEY"] = filepath.Join(keys, "audit-0.key")
	env["TPCLUSTER_NATS_CREDS"] = filepath.Join(auth, natsauth.CredsFile(natsauth.Verifier))
	env["TPCLUSTER_NATS_CA"] = filepath.Join(auth, natsauth.CAFile)
	vlog := startProcess(t, "verifierd", envList(env), builtBinary(t, "verifierd"))

	start := time.Now()
	for _, name := range wantStreams {
		testwait.Until(t, 90*time.Second, "stream "+name, within(t, func(ctx context.Context) error {
			s, err := js.Stream(ctx, name)
			if err != nil {
				return err
			}
			if r := s.CachedInfo().Config.Replicas; r != 3 {
				return fmt.Errorf("stream %s has %d replicas, want 3", name, r)
			}
			return nil
		}))
	}
	t.Logf("every stream there %v after verifierd started", time.Since(start).Round(time.Millisecond))
	// The node opens the ledger the Job made, as the verifier role.
	testwait.Until(t, 60*time.Second, "verifierd's ledger open as verifier", func() error {
		if out := vlog.String(); !strings.Contains(out, "replay ledger ready") {
			return fmt.Errorf("not yet:\n%s", out)
		}
		return nil
	})
	if out := vlog.String(); strings.Contains(out, "Permissions Violation") {
		t.Errorf("verifierd hit a permissions violation as the verifier role:\n%s", out)
	}
	s, err := js.Stream(t.Context(), audit.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strconv.FormatInt(s.CachedInfo().Config.MaxBytes, 10), env["TPCLUSTER_AUDIT_MAX_BYTES"]; got != want {
		t.Errorf("audit stream max bytes %s, want the manifest's %s", got, want)
	}
	if out := vlog.String(); strings.Contains(out, "insufficient") {
		t.Errorf("verifierd logged a storage refusal:\n%s", out)
	}

	// The limit the test guards: the old default does not fit.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = audit.EnsureStream(ctx, js, audit.StreamConfig{Name: "TOO_BIG", Replicas: 3, MaxBytes: 10 << 30, Region: "toobig"}, nil)
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || !strings.Contains(apiErr.Description, "insufficient") {
		t.Errorf("a 10 GiB R3 audit stream on these servers = %v, want an insufficient storage refusal", err)
	} else {
		t.Logf("10 GiB R3 audit stream: %v", err)
	}
}

// rewriteK8sNATS points deploy/k8s/nats.conf at loopback ports and a store
// directory; every replacement must match exactly once, so a change in the
// shipped file's shape fails here instead of testing something else.
func rewriteK8sNATS(t *testing.T, conf []byte, client, route int, routes []int, store, auth string) []byte {
	t.Helper()
	accounts, err := os.ReadFile(filepath.Join(auth, natsauth.AuthConfFile))
	if err != nil {
		t.Fatal(err)
	}
	var list []string
	for _, p := range routes {
		list = append(list, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	out := string(conf)
	for _, r := range []struct{ old, new string }{
		{"listen: 0.0.0.0:4222", fmt.Sprintf("listen: 127.0.0.1:%d", client)},
		{"http: 127.0.0.1:8222", ""},
		// The Secret tpcluster-nats-server: the accounts inline (the file
		// moves), the certificates from the test's set.
		{"include ../auth/auth.conf", string(accounts)},
		{"cert_file: /etc/nats/auth/server.pem", fmt.Sprintf("cert_file: %q", filepath.Join(auth, natsauth.ServerCertFile))},
		{"key_file: /etc/nats/auth/server-key.pem", fmt.Sprintf("key_file: %q", filepath.Join(auth, natsauth.ServerKeyFile))},
		{"ca_file: /etc/nats/auth/ca.pem", fmt.Sprintf("ca_file: %q", filepath.Join(auth, natsauth.CAFile))},
		{"store_dir: /data", fmt.Sprintf("store_dir: %q", store)},
		{"listen: 0.0.0.0:6222", fmt.Sprintf("listen: 127.0.0.1:%d", route)},
	} {
		if n := strings.Count(out, r.old); n != 1 {
			t.Fatalf("deploy/k8s/nats.conf: %q occurs %d times, want once", r.old, n)
		}
		out = strings.Replace(out, r.old, r.new, 1)
	}
	re := regexp.MustCompile(`(?s)routes: \[[^\]]*\]`)
	if n := len(re.FindAllString(out, -1)); n != 1 {
		t.Fatalf("deploy/k8s/nats.conf: %d route lists, want one", n)
	}
	return []byte(re.ReplaceAllLiteralString(out, "routes: ["+strings.Join(list, ", ")+"]"))
}

func envList(env map[string]string) []string {
	out := []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// procLog is a process's output, safe to read while it runs.
type procLog struct {
	mu sync.Mutex
	b  bytes.Buffer // guarded by mu
}

func (l *procLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *procLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startProcess starts bin with env and args, stops it (SIGTERM, then
// SIGKILL after 20 s) when the test ends, and logs its output if the test
// failed.
func startProcess(t *testing.T, name string, env []string, bin string, args ...string) *procLog {
	t.Helper()
	out := &procLog{}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			s := out.String()
			if len(s) > 6000 {
				s = s[len(s)-6000:]
			}
			t.Logf("--- %s output:\n%s", name, s)
		}
	})
	return out
}

// within gives f a context bounded to 2s, for testwait.Until.
func within(t *testing.T, f func(ctx context.Context) error) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		return f(ctx)
	}
}
