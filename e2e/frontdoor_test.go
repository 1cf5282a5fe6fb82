package e2e

import (
	"fmt"
	"net/http"
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

// denial is a request a front door must answer with a SPEC §6 denial.
type denial struct {
	name   string
	req    *http.Request
	status int
	reason string
}

// checkDenials sends each case's request through c, as a subtest named by
// the case, and checks that the caller gets the status and reason with the
// SPEC §6 body (its request_id the X-Request-Id the caller got, never
// empty) and that up, the app, was not reached. also, if not nil, makes a
// front door's own further checks on each answer.
func checkDenials(t *testing.T, c *http.Client, up *upstream, cases []denial, also func(t *testing.T, tt denial, a answer)) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			before := up.count()
			a := send(t, c, tt.req)
			if a.status != tt.status || a.reason() != tt.reason {
				t.Fatalf("%s = %d %s, want %d %s", tt.name, a.status, a.body, tt.status, tt.reason)
			}
			id := a.header.Get("X-Request-Id")
			want := fmt.Sprintf(`{"allowed":false,"reason":%q,"request_id":%q}`, tt.reason, id)
			if string(a.body) != want || id == "" {
				t.Errorf("body = %s, want %s", a.body, want)
			}
			if also != nil {
				also(t, tt, a)
			}
			if up.count() != before {
				t.Error("a denied request reached the app")
			}
		})
	}
}
