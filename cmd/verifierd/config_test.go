package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tpcluster/tpcluster/internal/bundle"
	"github.com/tpcluster/tpcluster/internal/keyfile"
	"github.com/tpcluster/tpcluster/internal/natsauth"
)

func TestConfigEnvAndFlags(t *testing.T) {
	env := map[string]string{
		"TPCLUSTER_MAX_BODY_BYTES":    "2048",
		"TPCLUSTER_TRUSTED_PROXIES":   "10.0.0.0/8, 192.168.1.0/24",
		"TPCLUSTER_LISTEN":            ":9999",
		"TPCLUSTER_BUNDLE_PUBLIC_KEY": "a.pub,b.pub",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	c, err := parseConfig([]string{"--listen", "127.0.0.1:1234", "--trust-material", "t.json", "--policy-bundle", "p.json"}, lookup, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.Listen != "127.0.0.1:1234" {
		t.Errorf("listen = %q: the flag beats the environment", c.Listen)
	}
	if c.MaxBodyBytes != 2048 || len(c.trustedProxies) != 2 || len(c.BundlePublicKeys) != 2 {
		t.Errorf("from env: max body %d, proxies %v, keys %v", c.MaxBodyBytes, c.trustedProxies, c.BundlePublicKeys)
	}
}

// TestConfigProblems: every problem is reported at once, each naming flag,
// variable and value.
func TestConfigProblems(t *testing.T) {
	c, err := parseConfig([]string{
		"--listen", "nope", "--max-body-bytes", "-1", "--ledger-replicas", "7", "--max-body-memory-bytes", "-2",
		"--trusted-proxies", "10.0.0.0/99", "--upstream", "ftp://x", "--ledger-sync", "sometimes",
		"--log-format", "xml", "--shutdown-delay", "-1s",
		"--ready-max-audit-pending", "0",
		"--trust-material", "t.json", "--policy-bundle", "p.json", "--bundle-public-key", "k.pub",
	}, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad configuration")
	}
	for _, want := range []string{
		"--listen=nope (TPCLUSTER_LISTEN)",
		"--max-body-bytes=-1 (TPCLUSTER_MAX_BODY_BYTES): must be positive",
		"--max-body-memory-bytes=-2 (TPCLUSTER_MAX_BODY_MEMORY_BYTES): must be at least --max-body-bytes",
		"--ledger-replicas=7 (TPCLUSTER_LEDGER_REPLICAS)",
		"--trusted-proxies=10.0.0.0/99 (TPCLUSTER_TRUSTED_PROXIES)",
		"--upstream=ftp://x (TPCLUSTER_UPSTREAM)",
		"--ledger-sync=sometimes (TPCLUSTER_LEDGER_SYNC)",
		"--log-format=xml (TPCLUSTER_LOG_FORMAT): want text or json",
		"--shutdown-delay=-1s (TPCLUSTER_SHUTDOWN_DELAY): must not be negative",
		"--ready-max-audit-pending=0 (TPCLUSTER_READY_MAX_AUDIT_PENDING): must be positive",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error lacks %q:\n%v", want, err)
		}
	}
}

func TestConfigBadEnv(t *testing.T) {
	_, err := parseConfig(nil, func(k string) (string, bool) {
		if k == "TPCLUSTER_CLOCK_SKEW" {
			return "soon", true
		}
		return "", false
	}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "TPCLUSTER_CLOCK_SKEW") {
		t.Errorf("parseConfig with TPCLUSTER_CLOCK_SKEW=soon = %v", err)
	}
}

// TestConfigLedgerShards: the shard flags read their env vars and refuse
// what would break exactly-once or cannot be built.
func TestConfigLedgerShards(t *testing.T) {
	base := []string{"--trust-material", "t.json", "--policy-bundle", "p.json", "--bundle-public-key", "k.pub"}
	env := map[string]string{"TPCLUSTER_LEDGER_SHARDS": "3", "TPCLUSTER_LEDGER_SHARDS_PREVIOUS": "1"}
	c, err := parseConfig(base, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.LedgerShards != 3 || c.LedgerShardsPrev != 1 {
		t.Fatalf("from env: shards %d, previous %d, Validate = %v; want 3, 1, nil", c.LedgerShards, c.LedgerShardsPrev, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--ledger-shards", "0"}, "--ledger-shards=0 (TPCLUSTER_LEDGER_SHARDS): must be 1 to 64"},
		{[]string{"--ledger-shards", "2", "--ledger-shards-previous", "2"}, "--ledger-shards-previous=2 (TPCLUSTER_LEDGER_SHARDS_PREVIOUS): equals --ledger-shards"},
		{[]string{"--ledger-shards-previous", "-1"}, "--ledger-shards-previous=-1 (TPCLUSTER_LEDGER_SHARDS_PREVIOUS): must be 0"},
		{[]string{"--ledger-shards", "3", "--region", "eu"}, "--ledger-shards=3 (TPCLUSTER_LEDGER_SHARDS): sharding is not supported together with --region"},
	} {
		c, err := parseConfig(append(tc.args, base...), func(string) (string, bool) { return "", false }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%v) = %v, want it to contain %q", tc.args, err, tc.want)
		}
	}
}

func TestConfigAssertionFlags(t *testing.T) {
	base := []string{"--trust-material", "t.json", "--policy-bundle", "p.json", "--bundle-public-key", "k.pub"}
	for _, tc := range []struct {
		args []string
		want string // "" means valid
	}{
		{[]string{"--assertion-key", "a.key"}, "--assertion-issuer= (TPCLUSTER_ASSERTION_ISSUER): --assertion-issuer goes with --assertion-key or --assertion-key-dir"},
		{[]string{"--assertion-key-dir", "keys"}, "--assertion-issuer= (TPCLUSTER_ASSERTION_ISSUER): --assertion-issuer goes with"},
		{[]string{"--assertion-issuer", "https://fleet"}, "--assertion-issuer goes with --assertion-key or --assertion-key-dir"},
		{[]string{"--assertion-public-key", "b.pub"}, "--assertion-public-key=b.pub (TPCLUSTER_ASSERTION_PUBLIC_KEY): needs --assertion-key or --assertion-key-dir"},
		{[]string{"--assertion-key", "a.key", "--assertion-key-dir", "keys", "--assertion-issuer", "https://fleet"}, "--assertion-key-dir=keys (TPCLUSTER_ASSERTION_KEY_DIR): give --assertion-key or --assertion-key-dir, not both"},
		{[]string{"--assertion-key", "a.key", "--assertion-issuer", "https://fleet", "--assertion-public-key", "b.pub,c.pub"}, ""},
		{[]string{"--assertion-key-dir", "keys", "--assertion-issuer", "https://fleet", "--assertion-public-key", "b.pub"}, ""},
	} {
		c, err := parseConfig(append(slices.Clone(base), tc.args...), func(string) (string, bool) { return "", false }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		err = c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: err = %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestReadAssertionKeys: a key file others may read stops the node; a good
// one yields a minter whose JWKS lists it and the fleet's other keys.
func TestReadAssertionKeys(t *testing.T) {
	dir := t.TempDir()
	own, err := keyfile.Generate("node-1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := keyfile.Generate("node-2")
	if err != nil {
		t.Fatal(err)
	}
	if err := own.Write(filepath.Join(dir, "own")); err != nil {
		t.Fatal(err)
	}
	if err := other.Write(filepath.Join(dir, "other")); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{AssertionKey: []string{filepath.Join(dir, "own.key")}, AssertionIssuer: "https://fleet",
		AssertionPublicKeys: []string{filepath.Join(dir, "other.pub")}}
	m, _, err := readAssertionKeys(cfg, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	jwks := string(m.JWKSDocument())
	if !strings.Contains(jwks, `"kid":"node-1"`) || !strings.Contains(jwks, `"kid":"node-2"`) || m.KID() != "node-1" {
		t.Errorf("kid %s, jwks %s", m.KID(), jwks)
	}
	// Two keys during a rotation: both in the JWKS, the first signs while
	// no trust material says otherwise.
	two := &Config{AssertionKey: []string{filepath.Join(dir, "own.key"), filepath.Join(dir, "other.key")}, AssertionIssuer: "https://fleet"}
	m2, _, err := readAssertionKeys(two, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if jwks := string(m2.JWKSDocument()); !strings.Contains(jwks, `"kid":"node-1"`) || !strings.Contains(jwks, `"kid":"node-2"`) || m2.KID() != "node-1" {
		t.Errorf("two keys: kid %s, jwks %s", m2.KID(), jwks)
	}
	if err := os.Chmod(cfg.AssertionKey[0], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readAssertionKeys(cfg, nil, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "--assertion-key") {
		t.Errorf("0644 key: err = %v, want a refusal naming --assertion-key", err)
	}
	if m, _, err := readAssertionKeys(&Config{}, nil, slog.New(slog.DiscardHandler)); m != nil || err != nil {
		t.Errorf("no flag: %v %v", m, err)
	}
}

// TestConfigNATSAuth: the NATS credential flags are checked at start, each
// problem naming flag and file (issue 12).
func TestConfigNATSAuth(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nats")
	if err := natsauth.Generate(natsauth.Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(dir, natsauth.CredsFile(natsauth.Verifier))
	open := filepath.Join(t.TempDir(), "open.creds")
	data, err := os.ReadFile(creds)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(open, data, 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"--trust-material", "t.json", "--policy-bundle", "p.json", "--bundle-public-key", "k.pub"}
	tests := []struct {
		name string
		args []string
		want string // "" valid
	}{
		{"cluster with creds", []string{"--nats-url", "tls://n1:4222", "--nats-creds", creds, "--nats-ca", filepath.Join(dir, natsauth.CAFile)}, ""},
		{"creds 0644", []string{"--nats-url", "tls://n1:4222", "--nats-creds", open}, "--nats-creds=" + open + " (TPCLUSTER_NATS_CREDS): holds a secret but has mode 0644"},
		{"missing CA", []string{"--nats-url", "tls://n1:4222", "--nats-ca", "/nonexistent/ca.pem"}, "--nats-ca=/nonexistent/ca.pem (TPCLUSTER_NATS_CA): no such file"},
		{"embedded with creds", []string{"--nats-creds", creds}, "only with --nats-url"},
		{"embedded on all interfaces", []string{"--nats-listen", "0.0.0.0:4222"}, "loopback only"},
		{"embedded on loopback", []string{"--nats-listen", "127.0.0.1:4222"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(append(tt.args, base...), func(string) (string, bool) { return "", false }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate = %v, want it to say %q", err, tt.want)
			}
		})
	}
}

// TestConfigEgressFlags: --egress-secret and --egress-key name a file per
// provider; a malformed entry, a provider named twice, a missing, too
// open or unreadable file is a configuration problem naming its flag (exit
// 2 before anything listens); good files yield one credential each.
func TestConfigEgressFlags(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secret := write("acme.secret", "s3cret\n", 0o600)
	open := write("open.secret", "s3cret\n", 0o644)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ec)
	key := write("jwt.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), 0o600)
	pub, _ := keyfile.Generate("not-pem")
	if err := pub.Write(filepath.Join(dir, "tp")); err != nil {
		t.Fatal(err)
	}
	base := []string{"--trust-material", write("t.json", "{}", 0o644), "--policy-bundle", write("p.json", "{}", 0o644),
		"--bundle-public-key", filepath.Join(dir, "tp.pub")}
	for _, tc := range []struct {
		name string
		args []string
		want string // "" means valid
	}{
		{"secret and key", []string{"--egress-secret", "acme=" + secret, "--egress-key", "acme-jwt=" + key}, ""},
		{"env list", []string{"--egress-secret", "a=" + secret + ",b=" + secret}, ""},
		{"no provider", []string{"--egress-secret", "=" + secret}, "--egress-secret==" + secret + " (TPCLUSTER_EGRESS_SECRET): want PROVIDER=FILE"},
		{"no file", []string{"--egress-key", "acme"}, "--egress-key=acme (TPCLUSTER_EGRESS_KEY): want PROVIDER=FILE"},
		{"provider twice", []string{"--egress-secret", "acme=" + secret, "--egress-key", "acme=" + key}, "provider acme already has a credential (--egress-secret)"},
		{"missing file", []string{"--egress-secret", "acme=" + filepath.Join(dir, "nope")}, "--egress-secret=acme=" + filepath.Join(dir, "nope") + " (TPCLUSTER_EGRESS_SECRET): egress: open"},
		{"too open", []string{"--egress-secret", "acme=" + open}, "(TPCLUSTER_EGRESS_SECRET): egress: " + open + " has mode 0644"},
		{"not a PEM key", []string{"--egress-key", "acme=" + filepath.Join(dir, "tp.key")}, "(TPCLUSTER_EGRESS_KEY): egress: " + filepath.Join(dir, "tp.key") + ": not a PEM PRIVATE KEY"},
		{"timeout", []string{"--egress-timeout", "0s"}, "--egress-timeout=0s (TPCLUSTER_EGRESS_TIMEOUT): must be positive and at most 1m"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := configure(append(slices.Clone(base), tc.args...), func(string) (string, bool) { return "", false }, io.Discard)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("configure = %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("configure = %v, want %q", err, tc.want)
			}
		})
	}
	c, err := configure(append(slices.Clone(base), "--egress-secret", "acme="+secret, "--egress-key", "acme-jwt="+key, "--upstream", "http://127.0.0.1:1"),
		func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	client, err := newEgressClient(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Check(&bundle.EgressProvider{ID: "acme", ClientAuth: bundle.ClientSecretBasic}); err != nil {
		t.Errorf("acme: %v", err)
	}
	if err := client.Check(&bundle.EgressProvider{ID: "acme-jwt", ClientAuth: bundle.PrivateKeyJWT}); err != nil {
		t.Errorf("acme-jwt: %v", err)
	}
	if err := client.Check(&bundle.EgressProvider{ID: "other", ClientAuth: bundle.ClientSecretBasic}); err == nil {
		t.Error("a provider without a credential passed the check")
	}
	// Check mode does not bridge: no client, no bundle check.
	c.upstreamURL = nil
	if client, err := newEgressClient(c, nil); client != nil || err != nil {
		t.Errorf("check mode: client %v, %v", client, err)
	}
}
