package natstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tpcluster/tpcluster/internal/testport"
)

const serverModule = "github.com/nats-io/nats-server/v2"

// build holds the one nats-server build of a test process. It is package
// state on purpose, like tailscale's integration.GetBinaries: building is
// what a test process must do at most once.
var build struct {
	once sync.Once
	path string
	err  error
}

// BuildServerBinary builds the external nats-server at the version go.mod
// requires (SPEC: Debian's nats-server is too old for per-key TTLs) and
// returns its path. It builds once per test process, into a directory under
// os.TempDir() named after the version and platform, and replaces the binary
// there atomically, so concurrent test processes never see half a file. The
// go command must be on PATH.
func BuildServerBinary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() { build.path, build.err = buildServer() })
	if build.err != nil {
		t.Fatalf("natstest.BuildServerBinary: %v", build.err)
	}
	return build.path
}

func buildServer() (string, error) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("go command not found: %w", err)
	}
	version, err := moduleVersion(goCmd, serverModule)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("tpcluster-natstest-%d", os.Getuid()),
		fmt.Sprintf("nats-server-%s-%s-%s", version, runtime.GOOS, runtime.GOARCH))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "nats-server")
	tmp, err := os.CreateTemp(dir, "nats-server-*.tmp")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name()) // a no-op after the rename
	// Built inside this module, so go.mod and go.sum pick the version.
	cmd := exec.Command(goCmd, "build", "-o", tmp.Name(), serverModule)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", serverModule, err, out.Bytes())
	}
	if err := os.Rename(tmp.Name(), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// moduleVersion asks the go command which version of module path go.mod
// selects.
func moduleVersion(goCmd, path string) (string, error) {
	out, err := exec.Command(goCmd, "list", "-m", "-f", "{{.Version}}", path).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("go list -m %s: %w\n%s", path, err, ee.Stderr)
		}
		return "", fmt.Errorf("go list -m %s: %w", path, err)
	}
	v := strings.TrimSpace(string(out))
	if v == "" {
		return "", fmt.Errorf("go list -m %s: no version", path)
	}
	return v, nil
}

// External is a nats-server process with JetStream on a loopback port,
// for end-to-end tests. Stop and Start simulate an outage: the server comes
// back on the same port with the same store.
type External struct {
	t    testing.TB
	bin  string
	args []string
	port int
	net  ExternalNet

	cmd  *exec.Cmd     // guarded by mu; nil when stopped
	done chan struct{} // guarded by mu; closed when cmd has exited
	mu   sync.Mutex
	log  bytes.Buffer // guarded by mu; the server's output, shown when the test fails
}

// StartExternal starts the nats-server built by BuildServerBinary on a free
// 127.0.0.1 port, with JetStream and a store in t.TempDir(), plus any extra
// args, and waits until it accepts connections. It is stopped when the test
// ends, and its output is logged if the test failed.
func StartExternal(t testing.TB, args ...string) *External {
	t.Helper()
	return StartExternalNet(t, ExternalNet{}, args...)
}

// ExternalNet places an External somewhere other than the host's loopback,
// such as a network namespace of its own (a partition test cuts its link).
// The zero value is the host's loopback.
type ExternalNet struct {
	// Wrap is prepended to the server's command line, such as
	// "ip netns exec NAME".
	Wrap []string
	// Host is the address the server listens on. If empty, 127.0.0.1.
	Host string
	// Port is the client port, used both where the server listens and in
	// ClientURL (127.0.0.1:Port), where the test forwards it to Host. If
	// zero, a free port.
	Port int
	// Dial reaches Host:Port to see the server listening; if nil,
	// net.DialTimeout on the host.
	Dial func(addr string) (net.Conn, error)
}

// StartExternalNet is StartExternal placed by n.
func StartExternalNet(t testing.TB, n ExternalNet, args ...string) *External {
	t.Helper()
	bin := BuildServerBinary(t)
	if n.Port == 0 {
		n.Port = testport.Free(t, 1)[0]
	}
	if n.Host == "" {
		n.Host = "127.0.0.1"
	}
	if n.Dial == nil {
		n.Dial = func(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, time.Second) }
	}
	port := n.Port
	base := []string{"-a", n.Host, "-p", strconv.Itoa(port), "-js", "-sd", t.TempDir()}
	e := &External{t: t, bin: bin, args: append(base, args...), port: port, net: n}
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() {
			e.mu.Lock()
			t.Logf("nats-server output:\n%s", e.log.String())
			e.mu.Unlock()
		}
	})
	e.Start()
	return e
}

// ClientURL returns the URL clients connect to.
func (e *External) ClientURL() string {
	return fmt.Sprintf("nats://127.0.0.1:%d", e.port)
}

// Start starts the server (again) and waits until it accepts connections.
// Starting a running server is a test bug.
func (e *External) Start() {
	e.t.Helper()
	e.mu.Lock()
	if e.cmd != nil {
		e.mu.Unlock()
		e.t.Fatalf("natstest: external nats-server already running")
	}
	argv := append(append(slices.Clone(e.net.Wrap), e.bin), e.args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lockedWriter{&e.mu, &e.log}, lockedWriter{&e.mu, &e.log}
	if err := cmd.Start(); err != nil {
		e.mu.Unlock()
		e.t.Fatalf("natstest: start external nats-server: %v", err)
	}
	done := make(chan struct{})
	e.cmd, e.done = cmd, done
	e.mu.Unlock()
	go func() {
		defer close(done)
		cmd.Wait()
	}()

	deadline := time.Now().Add(readyTimeout)
	for {
		c, err := e.net.Dial(net.JoinHostPort(e.net.Host, strconv.Itoa(e.port)))
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			e.t.Fatalf("natstest: external nats-server exited at start: %v\n%s", cmd.ProcessState, e.output())
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("natstest: external nats-server not listening after %s: %v", readyTimeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// Stop stops the server and waits for it to exit; stopping a stopped server
// does nothing. The server gets an interrupt (a clean shutdown that flushes
// its store) and is killed if it has not exited after 10s.
func (e *External) Stop() {
	e.mu.Lock()
	cmd, done := e.cmd, e.done
	e.cmd, e.done = nil, nil
	e.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

func (e *External) output() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.log.String()
}

// lockedWriter serialises the process's stdout and stderr copies into one
// buffer.
type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// PID returns the running server's process id, or 0 when it is stopped,
// for tests that read its resource use from /proc.
func (e *External) PID() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cmd == nil || e.cmd.Process == nil {
		return 0
	}
	return e.cmd.Process.Pid
}

// ExternalCluster starts n external nats-servers (BuildServerBinary)
// clustered on loopback, named S-1 to S-n, with JetStream, and returns once
// a JetStream meta leader answers a client. Each is stopped when the test
// ends. Unlike Cluster, the servers are processes: a test can stall one
// with Pause, as a hung host or a cut-off network would.
func ExternalCluster(t testing.TB, n int) []*External {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest.ExternalCluster(%d): need at least one server", n)
	}
	routePorts := testport.Free(t, n)
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	name := "X-" + strings.ReplaceAll(t.Name(), "/", "_")
	servers := make([]*External, n)
	for i := range n {
		servers[i] = StartExternal(t, "--name", fmt.Sprintf("S-%d", i+1), "--cluster_name", name,
			"--cluster", routes[i], "--routes", strings.Join(routes, ","))
	}
	deadline := time.Now().Add(2 * readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		if last = externalMetaReady(servers); last == nil {
			return servers
		}
		time.Sleep(pollInterval * 5)
	}
	t.Fatalf("natstest: external JetStream cluster not ready after %s: %v", 2*readyTimeout, last)
	return nil
}

func externalMetaReady(servers []*External) error {
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.ClientURL())
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.Timeout(time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// Pause stops the server process with SIGSTOP: its sockets stay open and
// nothing answers, as with a hung host. It is resumed when the test ends,
// if Resume was not called.
func (e *External) Pause() {
	e.t.Helper()
	pid := e.PID()
	if pid == 0 {
		e.t.Fatalf("natstest: Pause of a stopped external nats-server")
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		e.t.Fatalf("natstest: SIGSTOP nats-server: %v", err)
	}
	e.t.Cleanup(func() { syscall.Kill(pid, syscall.SIGCONT) })
	// SIGSTOP is delivered asynchronously: a thread running on another
	// core can still answer a request sent right after Kill returns (a
	// failover test once saw its first write succeed on the "stalled"
	// server). Wait until the kernel reports the process stopped.
	deadline := time.Now().Add(10 * time.Second)
	for !processStopped(pid) {
		if time.Now().After(deadline) {
			e.t.Fatalf("natstest: nats-server %d not stopped 10s after SIGSTOP", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// processStopped reports whether /proc says pid is stopped (state T).
func processStopped(pid int) bool {
	// Every thread: the group stop reaches each one on its own, and a
	// thread still running can still answer a request.
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			return false
		}
		// The state follows the command name, which is in parentheses
		// and may itself hold spaces or parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
			return false
		}
	}
	return true
}

// Resume continues a paused server with SIGCONT.
func (e *External) Resume() {
	e.t.Helper()
	if pid := e.PID(); pid != 0 {
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			e.t.Fatalf("natstest: SIGCONT nats-server: %v", err)
		}
	}
}
