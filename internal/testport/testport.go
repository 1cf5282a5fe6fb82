// Package testport hands tests loopback TCP ports for servers that must be
// told their port before they listen (cluster routes, gateways, external
// processes restarted on the same address).
//
// Ports come from outside the kernel's ephemeral range. A port reserved by
// listening on ":0" is released before the server binds it, and in that gap
// any outgoing connection or ":0" listener of the tests running beside this
// one may be given the same port by the kernel ("address already in use",
// seen in CI). Outside the ephemeral range only an explicit bind can take a
// port, and other test processes pick theirs at random from thousands.
package testport

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Linux's default when /proc cannot be read.
const (
	defaultLo = 32768
	defaultHi = 60999
)

// lowest is the bottom of the range we pick from: below it sit well-known
// services that a developer machine may run.
const lowest = 10000

// EphemeralRange returns the kernel's range for automatically chosen local
// ports (net.ipv4.ip_local_port_range), or Linux's default when it cannot
// be read or parsed.
func EphemeralRange() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultLo, defaultHi
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return defaultLo, defaultHi
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || lo > hi || lo < 1 || hi > 65535 {
		return defaultLo, defaultHi
	}
	return lo, hi
}

// spans returns the port intervals [from, to) outside the ephemeral range
// that leave room for width consecutive ports.
func spans(lo, hi, width int) [][2]int {
	var out [][2]int
	if lo-width > lowest {
		out = append(out, [2]int{lowest, lo - width})
	}
	if hi+1 < 65536-width {
		out = append(out, [2]int{hi + 1, 65536 - width})
	}
	return out
}

// attempts bounds the search: each attempt is a random block, so only a
// machine with nearly every port in use exhausts it.
const attempts = 100

// Free returns n distinct loopback ports, outside the ephemeral range, that
// were free a moment ago. All n listeners are open at once, so no port is
// handed out twice.
func Free(t testing.TB, n int) []int {
	t.Helper()
	lo, hi := EphemeralRange()
	ss := spans(lo, hi, 1)
	if len(ss) == 0 {
		t.Fatalf("testport: no ports outside the ephemeral range %d-%d", lo, hi)
	}
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries == attempts*n {
			t.Fatalf("testport: found %d of %d free ports in %d tries", len(ports), n, tries)
		}
		p := random(ss)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue // in use, or held by us already
		}
		ls = append(ls, l)
		ports = append(ports, p)
	}
	return ports
}

// Addrs returns n distinct "127.0.0.1:port" listen addresses, as Free.
func Addrs(t testing.TB, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i, p := range Free(t, n) {
		addrs[i] = "127.0.0.1:" + strconv.Itoa(p)
	}
	return addrs
}

// Block returns a base port such that base+off is free for every offset,
// every one of them outside the ephemeral range. Offsets must be >= 0.
func Block(t testing.TB, offsets ...int) int {
	t.Helper()
	width := 1
	for _, off := range offsets {
		if off < 0 {
			t.Fatalf("testport: negative offset %d", off)
		}
		width = max(width, off+1)
	}
	lo, hi := EphemeralRange()
	ss := spans(lo, hi, width)
	if len(ss) == 0 {
		t.Fatalf("testport: no block of %d ports outside the ephemeral range %d-%d", width, lo, hi)
	}
	for range attempts {
		base := random(ss)
		if blockFree(base, offsets) {
			return base
		}
	}
	t.Fatalf("testport: no free block of %d ports in %d tries", width, attempts)
	return 0
}

func blockFree(base int, offsets []int) bool {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for _, off := range offsets {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+off))
		if err != nil {
			return false
		}
		ls = append(ls, l)
	}
	return true
}

// random returns a port from one of the spans, each span weighted by its size.
func random(ss [][2]int) int {
	total := 0
	for _, s := range ss {
		total += s[1] - s[0]
	}
	r := rand.IntN(total)
	for _, s := range ss {
		if r < s[1]-s[0] {
			return s[0] + r
		}
		r -= s[1] - s[0]
	}
	panic("unreachable")
}
