package backendjwt_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/assertion"
	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
)

// joseVersion is the npm jose release the interop test installs, pinned so
// a new release cannot change the result between runs.
const joseVersion = "5.9.6"

// verifyScript verifies argv[2] with the JWKS file argv[3] using npm jose,
// requiring the issuer, audience and typ, and prints the claims.
const verifyScript = `
const jose = require('jose');
const fs = require('fs');
(async () => {
  const [token, jwksFile, iss, aud] = process.argv.slice(2);
  const jwks = jose.createLocalJWKSet(JSON.parse(fs.readFileSync(jwksFile, 'utf8')));
  const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, {
    issuer: iss, audience: aud, typ: 'tp-assertion+jwt', algorithms: ['EdDSA'], maxTokenAge: '60s',
  });
  console.log(JSON.stringify({ kid: protectedHeader.kid, payload }));
})().catch((e) => { console.error('REFUSED ' + e.code + ': ' + e.message); process.exit(3); });
`

// TestJoseInterop verifies our assertions with the npm jose library, a
// second, independent JOSE implementation: a valid one verifies, one for
// another audience and one signed by a key outside the JWKS do not. Node
// and npm must be on the machine; under CI=true their absence (or an npm
// install failure) fails the test rather than skipping it.
func TestJoseInterop(t *testing.T) {
	unavailable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		unavailable("node not found: %v", err)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		unavailable("npm not found: %v", err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, npm, "install", "--prefix", dir, "--no-audit", "--no-fund", "--silent", "jose@"+joseVersion)
	if out, err := install.CombinedOutput(); err != nil {
		unavailable("npm install jose@%s: %v\n%s", joseVersion, err, out)
	}
	script := filepath.Join(dir, "verify.js")
	if err := os.WriteFile(script, []byte(verifyScript), 0o600); err != nil {
		t.Fatal(err)
	}

	key, _ := keyfile.Generate("node-1")
	m, err := assertion.New(assertion.Config{Issuer: issuer, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	jwksFile := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksFile, m.JWKSDocument(), 0o600); err != nil {
		t.Fatal(err)
	}
	mint := func(m *assertion.Minter, aud string) string {
		a, err := m.Mint(&assertion.Request{Spec: &bundle.BackendAssertion{Audience: aud, TTL: 30 * time.Second},
			Subject: "spiffe://d/w", PassportJTI: "p-1", RouteID: "orders.get", Method: "GET", Target: "/v1/orders/1",
			TranscriptSHA256: strings.Repeat("ab", 32), KeyBinding: "software", TrustDomain: "d", EventID: "e-1", RequestID: "r-1"})
		if err != nil {
			t.Fatal(err)
		}
		return a.Token
	}
	run := func(token string) (string, error) {
		cmd := exec.CommandContext(ctx, node, script, token, jwksFile, issuer, "orders-backend")
		cmd.Dir = dir // require('jose') resolves from dir/node_modules
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := run(mint(m, "orders-backend"))
	if err != nil {
		t.Fatalf("jose refused our assertion: %v\n%s", err, out)
	}
	for _, want := range []string{`"kid":"node-1"`, `"aud":"orders-backend"`, `"route_id":"orders.get"`, `"passport_jti":"p-1"`} {
		if !strings.Contains(out, want) {
			t.Errorf("jose output lacks %s: %s", want, out)
		}
	}
	if out, err := run(mint(m, "billing-backend")); err == nil || !strings.Contains(out, "REFUSED") {
		t.Errorf("jose accepted an assertion for another audience: %v %s", err, out)
	}
	stranger, _ := keyfile.Generate("node-1") // same kid, key not in the JWKS
	sm, _ := assertion.New(assertion.Config{Issuer: issuer, Key: stranger})
	if out, err := run(mint(sm, "orders-backend")); err == nil || !strings.Contains(out, "REFUSED") {
		t.Errorf("jose accepted an assertion signed outside the JWKS: %v %s", err, out)
	}
}
