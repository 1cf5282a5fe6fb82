package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tpcluster/tpcluster/internal/testport"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// TestDemo runs the README's first command, `verifierd --demo`, on fresh
// loopback ports and a fresh data dir: a signed request is allowed and its
// replay denied jti_replay, the keys it wrote are 0600, and the commands it
// prints name a dialable address.
func TestDemo(t *testing.T) {
	addrs := testport.Addrs(t, 2) // at once, so never the same port twice
	listen, natsListen, dir := addrs[0], addrs[1], t.TempDir()
	p := startProc(t, "verifierd --demo", binary(t, "verifierd"),
		[]string{"--demo", "--data-dir", dir, "--listen", listen, "--nats-listen", natsListen},
		[]string{"TPCLUSTER_NODE_ID="}, syscall.SIGTERM)
	out := p.logs
	testwait.Until(t, 60*time.Second, "the demo's two requests", func() error {
		if err := p.running(); err != nil {
			return err
		}
		if !strings.Contains(out.String(), "Ctrl-C stops it.") {
			return errors.New("not yet")
		}
		return nil
	})
	text := out.String()
	first := strings.Index(text, "signed request\n    200 OK")
	replay := strings.Index(text, "(replay)\n    409 Conflict")
	if first < 0 || replay < first || !strings.Contains(text[replay:], `"reason":"jti_replay"`) {
		t.Errorf("demo output lacks the allowed request and its jti_replay denial:\n%s", text)
	}
	if !strings.Contains(text, "--url http://"+listen+"/v1/orders") {
		t.Errorf("demo commands do not name %s:\n%s", listen, text)
	}
	// The printed tpaudit explain command says why the replay was denied.
	_, afterReplay, _ := strings.Cut(text[max(replay, 0):], `"request_id":"`)
	replayID, _, _ := strings.Cut(afterReplay, `"`)
	// The embedded NATS takes only clients with a credential it wrote; the
	// audit-reader's reads the stream (issue 12).
	reader := filepath.Join(dir, "nats-auth", "audit-reader.creds")
	if !strings.Contains(text, "tpaudit explain --nats-url nats://"+natsListen+" --nats-creds "+reader+" REQUEST_ID") {
		t.Errorf("demo output does not print tpaudit explain for nats://%s:\n%s", natsListen, text)
	}
	var explained []byte
	testwait.Until(t, 30*time.Second, "the replay's audit event", func() error {
		var err error
		explained, err = exec.Command(binary(t, "tpaudit"), "explain", "--nats-url", "nats://"+natsListen, "--nats-creds", reader, replayID).CombinedOutput()
		if err != nil {
			return fmt.Errorf("tpaudit explain %s: %v\n%s", replayID, err, explained)
		}
		return nil
	})
	for _, want := range []string{"was denied: 409 jti_replay", "detail_code jti_consumed", "route orders.create"} {
		if !strings.Contains(string(explained), want) {
			t.Errorf("tpaudit explain %s lacks %q:\n%s", replayID, want, explained)
		}
	}
	t.Logf("tpaudit explain of the demo's replay:\n%s", explained)
	// The printed tpcurl command works: allowed, then the same request
	// denied, which tpcurl's exit status 4 says (a deny is no success).
	callerKey := filepath.Join(dir, "demo", "caller.key")
	code, tp := runCmd(t, nil, nil, "tpcurl", "--key", callerKey,
		"--route-id", "orders.get", "--url", "http://"+listen+"/v1/orders/ord_42", "--repeat", "2")
	if code != 4 || !strings.Contains(tp, "#1 GET") || !strings.Contains(tp, "200 OK") ||
		!strings.Contains(tp, "409 Conflict") || !strings.Contains(tp, "jti_replay") {
		t.Errorf("tpcurl --repeat 2 against the demo = exit %d, want 4 after 200 and 409 jti_replay\n%s", code, tp)
	}
	// orders.get asks for a backend assertion: the demo upstream verified
	// it with the node's JWKS (docs/BACKEND-JWT.md).
	if !strings.Contains(tp, `"verified":true`) || !strings.Contains(tp, `"aud":"orders-backend"`) ||
		!strings.Contains(tp, `"route_id":"orders.get"`) {
		t.Errorf("the demo upstream did not report a verified backend assertion:\n%s", tp)
	}
	// -d @FILE and -d @- send those bytes, signed: the upstream echoes
	// their hash.
	body := []byte(`{"order_id":"ord_from_file"}`)
	sum := sha256.Sum256(body)
	bodyFile := filepath.Join(t.TempDir(), "order.json")
	if err := os.WriteFile(bodyFile, body, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct {
		arg   string
		stdin []byte
	}{{"@" + bodyFile, nil}, {"@-", body}} {
		code, tp = runCmd(t, nil, d.stdin, "tpcurl", "--key", callerKey, "--route-id", "orders.create", "-X", "POST",
			"-H", "Content-Type: application/json", "-d", d.arg, "--url", "http://"+listen+"/v1/orders")
		if code != 0 || !strings.Contains(tp, "200 OK") || !strings.Contains(tp, hex.EncodeToString(sum[:])) {
			t.Errorf("tpcurl -d %s = exit %d, want 0, 200 and the body's hash echoed\n%s", d.arg, code, tp)
		}
	}
	// No answer at all is exit 3, naming the URL.
	closed := testport.Addrs(t, 1)[0]
	code, tp = runCmd(t, nil, nil, "tpcurl", "--key", callerKey, "--route-id", "orders.get", "--url", "http://"+closed+"/v1/orders/1")
	if code != 3 || !strings.Contains(tp, "no answer") || !strings.Contains(tp, closed) {
		t.Errorf("tpcurl to a closed port = exit %d, want 3 naming %s\n%s", code, closed, tp)
	}
	// Issue 12: the embedded NATS server takes no client without one of
	// the credentials it wrote (0600), and the printed tpaudit command's
	// credential (audit-reader) reads the audit stream.
	natsURL := "nats://" + natsListen
	if nc, err := nats.Connect(natsURL, nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Error("connect to the demo's embedded NATS without a credential = nil error")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("connect to the demo's embedded NATS without a credential = %v, want an authorization violation", err)
	}
	if !strings.Contains(text, "--nats-creds "+reader) {
		t.Errorf("demo output does not show tpaudit with %s:\n%s", reader, text)
	}
	// The printed command, bounded: the demo's decisions are in the stream.
	testwait.Until(t, 30*time.Second, "the demo's replay in tpaudit tail as audit-reader", func() error {
		out, err := exec.Command(binary(t, "tpaudit"), "tail", "--nats-url", natsURL, "--nats-creds", reader,
			"--since", "1h", "--follow=false").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "jti_replay") {
			return fmt.Errorf("tpaudit tail: %v\n%s", err, out)
		}
		return nil
	})
	for _, role := range []string{"verifier", "bundlepub", "audit-reader", "admin"} {
		k := filepath.Join(dir, "nats-auth", role+".creds")
		fi, err := os.Stat(k)
		if err != nil {
			t.Errorf("%s: %v", k, err)
		} else if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", k, fi.Mode().Perm())
		}
	}
	for _, k := range []string{"caller.key", "bundle.key"} {
		fi, err := os.Stat(filepath.Join(dir, "demo", k))
		if err != nil {
			t.Errorf("%s: %v", k, err)
		} else if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", k, fi.Mode().Perm())
		}
	}
}
