package e2e

// A private network for the fault suite's real partition: each
// nats-server in a network namespace of its own, on a bridge that lives in
// a hub namespace, so that cutting a server's link leaves its TCP
// connections established but carrying nothing (a partition, not a
// reset). Nothing of the host changes: every interface and address is
// inside namespaces the test creates and deletes. The host's processes
// (the test, verifierd, tpaudit) reach the servers through forwarders the
// test runs on 127.0.0.1: each accepted connection is dialled from inside
// the hub namespace, so it crosses the bridge and is cut with the link.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netLab is the namespaces of one test run.
type netLab struct {
	id      string   // unique per run: the namespaces' name prefix
	hub     string   // the namespace holding the bridge
	servers []string // one namespace per server
	addrs   []string // each server's address on the bridge

	mu    sync.Mutex
	conns map[net.Conn]struct{} // guarded by mu; open forwarded connections
	lns   []net.Listener        // guarded by mu
	wg    sync.WaitGroup
}

// netLabMissing says why this host cannot build a netLab, or "".
func netLabMissing() string {
	if runtime.GOOS != "linux" {
		return "network namespaces need Linux"
	}
	if os.Geteuid() != 0 {
		return "creating network namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "iproute2's ip is not installed"
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return "the kernel has no network namespaces (/proc/self/ns/net)"
	}
	return ""
}

// newNetLab creates a hub namespace with a bridge and n server namespaces,
// each linked to the bridge by a veth pair, server i at 10.77.0.(i+1), and
// deletes everything at cleanup, failed test included. Where the host
// forbids it, it returns nil and what is missing; any other failure fails
// the test.
func newNetLab(t *testing.T, n int) (*netLab, string) {
	t.Helper()
	if why := netLabMissing(); why != "" {
		return nil, why
	}
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	l := &netLab{id: "tpf" + hex.EncodeToString(b), conns: map[net.Conn]struct{}{}}
	l.hub = l.id + "-hub"
	t.Cleanup(l.close)
	ip := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	steps := [][]string{
		{"netns", "add", l.hub},
		{"-n", l.hub, "link", "set", "lo", "up"},
		{"-n", l.hub, "link", "add", "br0", "type", "bridge"},
		{"-n", l.hub, "addr", "add", "10.77.0.254/24", "dev", "br0"},
		{"-n", l.hub, "link", "set", "br0", "up"},
	}
	for i := range n {
		ns := fmt.Sprintf("%s-s%d", l.id, i+1)
		addr := fmt.Sprintf("10.77.0.%d", i+1)
		l.servers = append(l.servers, ns)
		l.addrs = append(l.addrs, addr)
		veth := fmt.Sprintf("v%d", i+1)
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", l.hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"-n", l.hub, "link", "set", veth, "master", "br0"},
			[]string{"-n", l.hub, "link", "set", veth, "up"},
			[]string{"-n", ns, "addr", "add", addr + "/24", "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
		)
	}
	for i, s := range steps {
		if err := ip(s...); err != nil {
			if i == 0 {
				// The first namespace: a container without the
				// capability, or a kernel without the support.
				return nil, fmt.Sprintf("this host refuses network namespaces: %v", err)
			}
			t.Fatal(err)
		}
	}
	return l, ""
}

// close stops the forwarders and deletes the namespaces (their veths and
// the bridge go with them).
func (l *netLab) close() {
	l.mu.Lock()
	for _, ln := range l.lns {
		ln.Close()
	}
	for c := range l.conns {
		c.Close()
	}
	l.conns = nil
	l.mu.Unlock()
	l.wg.Wait()
	for _, ns := range append([]string{l.hub}, l.servers...) {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
}

// exec is the command prefix that runs a program in server i's namespace.
func (l *netLab) exec(i int) []string { return []string{"ip", "netns", "exec", l.servers[i]} }

// dial connects to addr from inside the hub namespace. The socket is
// created on a thread switched into that namespace, and keeps it; the
// thread is never switched back but ends with its goroutine (it stays
// locked), so no other goroutine runs in the hub's namespace.
func (l *netLab) dial(addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with us
		f, err := os.Open("/var/run/netns/" + l.hub)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("setns %s: %w", l.hub, err)}
			return
		}
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// forward accepts on 127.0.0.1:port of the host and forwards each
// connection to target, dialled across the bridge; it runs until cleanup.
// A connection whose target cannot be dialled is closed at once.
func (l *netLab) forward(t *testing.T, port int, target string) {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	l.lns = append(l.lns, ln)
	l.mu.Unlock()
	l.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.wg.Go(func() { l.pipe(c, target) })
		}
	})
}

// pipe copies between c and a new connection to target until either ends.
func (l *netLab) pipe(c net.Conn, target string) {
	defer c.Close()
	u, err := l.dial(target)
	if err != nil {
		return
	}
	defer u.Close()
	if !l.track(c, u) {
		return
	}
	defer l.untrack(c, u)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
	c.Close()
	u.Close()
	<-done
}

// track registers open connections so close can end them; it reports
// false once close has begun.
func (l *netLab) track(cs ...net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns == nil {
		return false
	}
	for _, c := range cs {
		l.conns[c] = struct{}{}
	}
	return true
}

func (l *netLab) untrack(cs ...net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range cs {
		delete(l.conns, c)
	}
}

// cut sets server i's link on the bridge down: its packets, and those to
// it, are dropped; no connection is reset. heal sets it up again.
func (l *netLab) cut(i int) error  { return l.link(i, "down") }
func (l *netLab) heal(i int) error { return l.link(i, "up") }

func (l *netLab) link(i int, state string) error {
	out, err := exec.Command("ip", "-n", l.hub, "link", "set", fmt.Sprintf("v%d", i+1), state).CombinedOutput()
	if err != nil {
		return errors.New(strings.TrimSpace(fmt.Sprintf("ip link set v%d %s: %v: %s", i+1, state, err, out)))
	}
	return nil
}
