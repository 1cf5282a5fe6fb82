package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/testport"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// runCmd runs one of the built commands to completion and returns its
// exit status and combined output.
func runCmd(t *testing.T, env []string, stdin []byte, name string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary(t, name), args...)
	cmd.Env = append(os.Environ(), env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("%s %q: %v", name, args, err)
	}
	return 0, string(out)
}

// TestVersionEverywhere: every command answers --version with its name,
// the module and the commit it was built from, and exits 0.
func TestVersionEverywhere(t *testing.T) {
	for _, name := range []string{"verifierd", "bundlepub", "tpaudit", "tpcurl", "tpload", "demoapi"} {
		code, out := runCmd(t, nil, nil, name, "--version")
		if code != 0 || !strings.HasPrefix(out, name+" github.com/tpcluster/tpcluster ") || !strings.Contains(out, " commit ") {
			t.Errorf("%s --version = %d %q, want 0 and name, module and commit", name, code, out)
		}
	}
}

// TestVerifierdConfigProblems: a malformed duration, a bad address, a bad
// variable and a missing key file are all reported at once, each naming
// flag, variable and value, with exit status 2, no usage dump, and before
// the embedded NATS server starts (its data directory is never made).
func TestVerifierdConfigProblems(t *testing.T) {
	dir := t.TempDir()
	addrs := testport.Addrs(t, 1)
	missing := filepath.Join(dir, "nowhere", "bundle.pub")
	code, out := runCmd(t, []string{"TPCLUSTER_MAX_BODY_BYTES=lots"}, nil, "verifierd",
		"--clock-skew", "5", "--listen", "nope", "--ledger-timeout=soon",
		"--bundle-public-key", missing, "--data-dir", dir, "--nats-listen", addrs[0])
	t.Logf("verifierd with four problems (exit %d):\n%s", code, out)
	if code != 2 {
		t.Errorf("exit status %d, want 2", code)
	}
	for _, want := range []string{
		`--clock-skew="5" (TPCLUSTER_CLOCK_SKEW): want a duration`,
		`--ledger-timeout="soon" (TPCLUSTER_LEDGER_TIMEOUT): want a duration`,
		`TPCLUSTER_MAX_BODY_BYTES="lots" (--max-body-bytes): want an integer`,
		"--listen=nope (TPCLUSTER_LISTEN): want host:port",
		"--bundle-public-key=" + missing + " (TPCLUSTER_BUNDLE_PUBLIC_KEY): keyfile: open " + missing + ": no such file or directory",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "Usage") || strings.Contains(out, "-audit-flush-timeout") {
		t.Error("a configuration problem printed the whole usage")
	}
	if _, err := os.Stat(filepath.Join(dir, "nats")); !os.IsNotExist(err) {
		t.Errorf("the embedded NATS server started before the configuration was judged (stat nats: %v)", err)
	}
	if strings.Contains(out, "embedded NATS server started") {
		t.Error("the embedded NATS server started")
	}
}

// TestCommandConfigProblems: the other commands exit 2 on a configuration
// problem and name every one.
func TestCommandConfigProblems(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		args  []string
		wants []string
	}{
		{"tpcurl", []string{"--ttl", "long", "--repeat", "0", "-d", "@" + filepath.Join(dir, "absent.json")}, []string{
			`--ttl="long" (TPCLUSTER_TTL): want a duration`, `--key="" (TPCLUSTER_KEY): required`, `--url="" (TPCLUSTER_URL): required`,
			"--repeat=0 (TPCLUSTER_REPEAT): must be at least 1", "(TPCLUSTER_D): cannot read the body file",
		}},
		{"tpaudit", []string{"tail", "--outcome", "denied", "--follow=maybe", "--nats-url", "nats://127.0.0.1:1"}, []string{
			`--follow="maybe" (TPCLUSTER_FOLLOW): want true or false`,
			`--outcome="denied" (TPCLUSTER_OUTCOME): want allow, deny or bundle`,
		}},
		{"tpload", []string{"--requests", "many", "--duration", "ever"}, []string{
			`--requests="many" (TPCLUSTER_REQUESTS): want an integer`, `--duration="ever" (TPCLUSTER_DURATION): want a duration`,
			"--world or --prepare: give exactly one",
		}},
		{"tpload", []string{"--world", filepath.Join(dir, "no-world"), "--target", "http://127.0.0.1:1"}, []string{
			"--world=" + filepath.Join(dir, "no-world") + " (TPCLUSTER_WORLD): stat " + filepath.Join(dir, "no-world") + ": no such file or directory",
		}},
		{"bundlepub", []string{"publish", "--beacon-interval", "often", "--replicas", "x"}, []string{
			`--beacon-interval="often" (TPCLUSTER_BEACON_INTERVAL): want a duration`, `--replicas="x" (TPCLUSTER_REPLICAS): want an integer`,
		}},
		{"bundlepub", []string{"publish", "--nats-url", "nats://127.0.0.1:1", "--trust-material", filepath.Join(dir, "t.json"),
			"--policy-bundle", filepath.Join(dir, "p.json"), "--bundle-public-key", filepath.Join(dir, "b.pub"), "--beacon-key", filepath.Join(dir, "beacon.key")}, []string{
			"--trust-material=" + filepath.Join(dir, "t.json") + " (TPCLUSTER_TRUST_MATERIAL): cannot read",
			"--policy-bundle=" + filepath.Join(dir, "p.json") + " (TPCLUSTER_POLICY_BUNDLE): cannot read",
			"--bundle-public-key=" + filepath.Join(dir, "b.pub") + " (TPCLUSTER_BUNDLE_PUBLIC_KEY): keyfile: open",
			"--beacon-key=" + filepath.Join(dir, "beacon.key") + " (TPCLUSTER_BEACON_KEY): keyfile: open",
		}},
	} {
		code, out := runCmd(t, nil, nil, tc.name, tc.args...)
		t.Logf("%s %q (exit %d):\n%s", tc.name, tc.args, code, out)
		if code != 2 {
			t.Errorf("%s %q exit status %d, want 2", tc.name, tc.args, code)
		}
		for _, want := range tc.wants {
			if !strings.Contains(out, want) {
				t.Errorf("%s %q output lacks %q", tc.name, tc.args, want)
			}
		}
	}
}

// TestUnreachableNATS: a NATS URL with no server behind it is reported
// with the URL and the cause (the dial error), never only as nats.go's "no
// servers available" or "outbound buffer limit exceeded": exit 1 for the
// one-shot commands, a warning line for verifierd, which keeps retrying.
func TestUnreachableNATS(t *testing.T) {
	closed := testport.Addrs(t, 1)[0]
	url := "nats://" + closed
	for _, args := range [][]string{
		{"tpaudit", "stats", "--nats-url", url},
		{"bundlepub", "status", "--nats-url", url, "--timeout", "1s"},
	} {
		code, out := runCmd(t, nil, nil, args[0], args[1:]...)
		t.Logf("%q (exit %d):\n%s", args, code, out)
		if code != 1 || !strings.Contains(out, url+": dial tcp "+closed) || !strings.Contains(out, "connection refused") {
			t.Errorf("%q = exit %d, want 1 naming %s and connection refused", args, code, url)
		}
	}
	p := startProc(t, "verifierd", binary(t, "verifierd"), []string{
		"--nats-url", url, "--dev-allow-unsigned-bundles", "--listen", testport.Addrs(t, 1)[0], "--data-dir", t.TempDir(),
	}, nil, syscall.SIGTERM)
	testwait.Until(t, 30*time.Second, "verifierd's warning naming the NATS URL and cause", func() error {
		if err := p.running(); err != nil {
			return err
		}
		for line := range strings.Lines(p.logs.String()) {
			if strings.Contains(line, "nats not reachable yet") && strings.Contains(line, "url="+url) && strings.Contains(line, "connection refused") {
				return nil
			}
		}
		return errors.New("no such line yet")
	})
}

// TestWrongKeyKinds: a public key given where a private one belongs, and
// the reverse, are named as such (exit 2), not met with "chmod 600".
func TestWrongKeyKinds(t *testing.T) {
	base := filepath.Join(t.TempDir(), "caller")
	if code, out := runCmd(t, nil, nil, "bundlepub", "keygen", "--out", base, "--kid", "caller-1"); code != 0 {
		t.Fatalf("bundlepub keygen = %d\n%s", code, out)
	}
	code, out := runCmd(t, nil, nil, "tpcurl", "--key", base+".pub", "--route-id", "r", "--url", "http://127.0.0.1:1/")
	if code != 2 || !strings.Contains(out, "this is a public key") || strings.Contains(out, "chmod") {
		t.Errorf("tpcurl --key NAME.pub = exit %d, want 2 and \"this is a public key\"\n%s", code, out)
	}
	code, out = runCmd(t, nil, nil, "verifierd", "--bundle-public-key", base+".key", "--data-dir", t.TempDir(),
		"--nats-listen", testport.Addrs(t, 1)[0])
	if code != 2 || !strings.Contains(out, "this is a private key") {
		t.Errorf("verifierd --bundle-public-key NAME.key = exit %d, want 2 and \"this is a private key\"\n%s", code, out)
	}
}
