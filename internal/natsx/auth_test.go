package natsx_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tpcluster/tpcluster/internal/natsauth"
	"github.com/tpcluster/tpcluster/internal/natsx"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
)

// generated writes a security set into a fresh directory.
func generated(t *testing.T, opts natsauth.Options) string {
	t.Helper()
	opts.Dir = filepath.Join(t.TempDir(), "nats")
	if err := natsauth.Generate(opts); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return opts.Dir
}

func copyFile(t *testing.T, src, dst string, perm os.FileMode) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, perm); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestClientAuthValidate(t *testing.T) {
	dir := generated(t, natsauth.Options{UserTTL: time.Hour})
	expiredDir := generated(t, natsauth.Options{UserTTL: time.Hour, Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }})
	tmp := t.TempDir()
	creds := filepath.Join(dir, natsauth.CredsFile(natsauth.Verifier))
	ca := filepath.Join(dir, natsauth.CAFile)
	cert, key := filepath.Join(dir, natsauth.ClientCertFile), filepath.Join(dir, natsauth.ClientKeyFile)
	openCreds := copyFile(t, creds, filepath.Join(tmp, "open.creds"), 0o644)
	openKey := copyFile(t, key, filepath.Join(tmp, "open-key.pem"), 0o644)
	garbage := filepath.Join(tmp, "garbage.creds")
	if err := os.WriteFile(garbage, []byte("not a creds file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	otherKey := copyFile(t, filepath.Join(expiredDir, natsauth.ClientKeyFile), filepath.Join(tmp, "other-key.pem"), 0o600)

	tests := []struct {
		name string
		auth natsx.ClientAuth
		want []string // each problem must hold these words; none: valid
	}{
		{"full set", natsx.ClientAuth{CredsFile: creds, CAFile: ca, CertFile: cert, KeyFile: key}, nil},
		{"creds only", natsx.ClientAuth{CredsFile: creds}, nil},
		{"missing creds", natsx.ClientAuth{CredsFile: filepath.Join(tmp, "nope.creds")}, []string{"--nats-creds", "nope.creds", "no such file"}},
		{"creds 0644", natsx.ClientAuth{CredsFile: openCreds}, []string{"--nats-creds", "open.creds", "mode 0644"}},
		{"not creds", natsx.ClientAuth{CredsFile: garbage}, []string{"--nats-creds", "garbage.creds", "not a NATS creds file"}},
		{"expired creds", natsx.ClientAuth{CredsFile: filepath.Join(expiredDir, natsauth.CredsFile(natsauth.Verifier))}, []string{"--nats-creds", "verifier.creds", "expired"}},
		{"CA not PEM", natsx.ClientAuth{CAFile: garbage}, []string{"--nats-ca", "garbage.creds", "no PEM certificate"}},
		{"cert without key", natsx.ClientAuth{CertFile: cert}, []string{"--nats-key", "needs --nats-key"}},
		{"key 0644", natsx.ClientAuth{CertFile: cert, KeyFile: openKey}, []string{"--nats-key", "open-key.pem", "mode 0644"}},
		{"key of another cert", natsx.ClientAuth{CertFile: cert, KeyFile: otherKey}, []string{"--nats-cert", "other-key.pem"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := tt.auth.Validate(time.Now())
			if len(tt.want) == 0 {
				if len(errs) > 0 {
					t.Fatalf("Validate = %v, want no problem", errs)
				}
				return
			}
			if len(errs) != 1 {
				t.Fatalf("Validate = %v, want one problem saying %q", errs, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(errs[0].Error(), w) {
					t.Errorf("Validate = %q, want it to say %q", errs[0], w)
				}
			}
		})
	}
}

// TestConnectAuthWrongServerName reaches a server whose certificate is for
// other names (127.0.0.1, ::1, localhost) at 127.0.0.2: a permanent TLS
// failure naming the URL, not a retry in the background.
func TestConnectAuthWrongServerName(t *testing.T) {
	dir := generated(t, natsauth.Options{})
	s, err := natsx.StartServer(t.Context(), natsx.ServerConfig{
		DataDir:     t.TempDir(),
		Listen:      "127.0.0.2:0",
		ConfigFiles: []string{filepath.Join(dir, natsauth.AuthConfFile), filepath.Join(dir, natsauth.TLSConfFile)},
	})
	if err != nil {
		t.Fatalf("StartServer: %v", err)
	}
	defer s.Shutdown(context.WithoutCancel(t.Context()))

	auth := &natsx.ClientAuth{CredsFile: filepath.Join(dir, natsauth.CredsFile(natsauth.Verifier)), CAFile: filepath.Join(dir, natsauth.CAFile)}
	if errs := auth.Validate(time.Now()); len(errs) > 0 {
		t.Fatal(errs)
	}
	nc, err := natsx.ConnectAuth(t.Context(), s.ClientURL(), "wrong-name", auth, nil)
	if err == nil {
		nc.Close()
		t.Fatal("ConnectAuth to a server with another name's certificate = nil error")
	}
	ce, ok := errors.AsType[*natsx.ConnectError](err)
	if !ok || ce.Kind != natsx.KindTLS || !ce.Permanent() || !strings.Contains(err.Error(), "127.0.0.2") {
		t.Fatalf("ConnectAuth = %v, want a permanent TLS ConnectError naming 127.0.0.2", err)
	}
	t.Logf("refused: %v", err)

}

// TestConnectAuthMutualTLS: a server that requires client certificates
// refuses a client without one (TLS, permanent) and takes one with
// --nats-cert and --nats-key.
func TestConnectAuthMutualTLS(t *testing.T) {
	dir := generated(t, natsauth.Options{})
	conf, err := os.ReadFile(filepath.Join(dir, natsauth.TLSConfFile))
	if err != nil {
		t.Fatal(err)
	}
	verify := filepath.Join(t.TempDir(), "tls-verify.conf")
	if err := os.WriteFile(verify, []byte(strings.Replace(string(conf), "timeout: 2", "timeout: 2\n  verify: true", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	s := natstest.ServerWithConfig(t, filepath.Join(dir, natsauth.AuthConfFile), verify)
	base := natsx.ClientAuth{CredsFile: filepath.Join(dir, natsauth.CredsFile(natsauth.Verifier)), CAFile: filepath.Join(dir, natsauth.CAFile)}

	noCert := base
	if errs := noCert.Validate(time.Now()); len(errs) > 0 {
		t.Fatal(errs)
	}
	nc, err := natsx.ConnectAuth(t.Context(), s.ClientURL(), "no-cert", &noCert, nil)
	if err == nil {
		nc.Close()
		t.Fatal("ConnectAuth without a client certificate = nil error, want refused")
	}
	if ce, ok := errors.AsType[*natsx.ConnectError](err); !ok || !ce.Permanent() {
		t.Fatalf("ConnectAuth without a client certificate = %v, want a permanent ConnectError", err)
	}
	t.Logf("refused: %v", err)

	withCert := base
	withCert.CertFile, withCert.KeyFile = filepath.Join(dir, natsauth.ClientCertFile), filepath.Join(dir, natsauth.ClientKeyFile)
	if errs := withCert.Validate(time.Now()); len(errs) > 0 {
		t.Fatal(errs)
	}
	nc, err = natsx.ConnectAuth(t.Context(), s.ClientURL(), "cert", &withCert, nil)
	if err != nil {
		t.Fatalf("ConnectAuth with a client certificate: %v", err)
	}
	nc.Close()
}

// TestConnectAuthRefusedRetries: with credentials, a server that is not
// there yet is no error: the connection keeps trying.
func TestConnectAuthRefusedRetries(t *testing.T) {
	dir := generated(t, natsauth.Options{})
	auth := &natsx.ClientAuth{CredsFile: filepath.Join(dir, natsauth.CredsFile(natsauth.Verifier)), CAFile: filepath.Join(dir, natsauth.CAFile)}
	if errs := auth.Validate(time.Now()); len(errs) > 0 {
		t.Fatal(errs)
	}
	s := natstest.Server(t)
	url := s.ClientURL()
	natstest.StopServer(t, s)
	nc, err := natsx.ConnectAuth(t.Context(), url, "early", auth, nil)
	if err != nil {
		t.Fatalf("ConnectAuth with no server = %v, want a background retry", err)
	}
	defer nc.Close()
	if nc.IsConnected() {
		t.Fatal("connected to a stopped server")
	}
	// What a one-shot client reports: refused, not permanent.
	ce := natsx.NewConnectError(url, nats.ErrNoServers)
	if ce.Kind != natsx.KindRefused || ce.Permanent() || !strings.Contains(ce.Error(), url) {
		t.Errorf("NewConnectError(%s, no servers) = %v (kind %s), want refused naming the URL", url, ce, ce.Kind)
	}
}
