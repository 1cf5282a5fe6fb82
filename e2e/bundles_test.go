package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/signer"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// The NATS bundle channel end to end, with real verifierd and
// bundlepub binaries and a real nats-server.

// bundlepub runs a bundlepub subcommand to completion.
func bundlepub(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runBinary(t, "bundlepub", args...)
}

func mustBundlepub(t testing.TB, args ...string) string {
	t.Helper()
	code, out, errs := bundlepub(t, args...)
	if code != 0 {
		t.Fatalf("bundlepub %v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errs)
	}
	return out
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
	signAs(t, cl.key, signer.PassportOptions{Subject: cl.subject, Audience: wAudience, KID: cl.kid}, req, nil, nil, routeID)
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

// nodeStatus is one node's reply as bundlepub status --json prints it.
type nodeStatus struct {
	NodeID         string   `json:"node_id"`
	Loaded         bool     `json:"loaded"`
	PolicySequence int64    `json:"policy_sequence"`
	PolicySHA256   string   `json:"policy_sha256"`
	TrustSequence  int64    `json:"trust_sequence"`
	StaleClasses   []string `json:"stale_classes"`
	ViewAgeSeconds float64  `json:"view_age_seconds"`
}

// status runs bundlepub status --json.
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
	return testwait.Until(t, 60*time.Second, fmt.Sprintf("%d nodes on (%d, %d)", n, trust, policy), func() error {
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

// signedByIntruder signs doc with a key of its own (kid "intruder"), for the
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
