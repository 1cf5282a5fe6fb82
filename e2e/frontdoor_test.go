package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// frontDoorBinary finds a front door's binary (nginx, caddy) on PATH, else
// at Debian's path; .ci/run installs Debian's package pkg when missing. A
// missing binary fails the test: it is part of what CI must prove.
func frontDoorBinary(t testing.TB, name, debianPath, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if _, err := os.Stat(debianPath); err == nil {
		return debianPath
	}
	t.Fatalf("%s not found: install it (apt-get install %s), as .ci/run does", name, pkg)
	return ""
}

// behindFrontDoor starts an upstream, verifierd for w in check mode (no
// --upstream; extra are further flags) and the front door that start runs
// in front of both (given their host:port), and returns the upstream, the
// verifier and the front door's base URL.
func behindFrontDoor(t *testing.T, w *world, start func(t *testing.T, verifier, app string) string, extra ...string) (*upstream, *node, string) {
	t.Helper()
	up := newUpstream(t)
	n := startVerifierd(t, w, true, extra...)
	return up, n, start(t, strings.TrimPrefix(n.URL, "http://"), strings.TrimPrefix(up.URL, "http://"))
}
