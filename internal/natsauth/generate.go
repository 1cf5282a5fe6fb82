package natsauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// File names Generate writes into its directory.
const (
	CAFile         = "ca.pem"
	ServerCertFile = "server.pem"
	ServerKeyFile  = "server-key.pem"
	ClientCertFile = "client.pem"
	ClientKeyFile  = "client-key.pem"
	// AuthConfFile is the nats-server configuration fragment: the operator,
	// the system account and the account JWTs (MEMORY resolver, preloaded).
	AuthConfFile = "auth.conf"
	// TLSConfFile is the fragment for the client listener's TLS, naming
	// the certificate files by absolute path.
	TLSConfFile = "tls.conf"
)

// AccountName is the account every tpcluster user belongs to.
const AccountName = "TPCLUSTER"

// CredsFile names role's creds file in a directory written by Generate.
func CredsFile(role Role) string { return string(role) + ".creds" }

// Options configures Generate.
type Options struct {
	// Dir receives the files. It is created (0700) if missing. Required.
	Dir string
	// Hosts are DNS names or IP addresses the server certificate is valid
	// for besides 127.0.0.1, ::1 and localhost (a Kubernetes Service name).
	Hosts []string
	// UserTTL is how long the user credentials are valid. If zero, they do
	// not expire (the embedded server's own credentials, which never leave
	// its host).
	UserTTL time.Duration
	// CertTTL is how long the certificates are valid. If zero, a year.
	CertTTL time.Duration
	// Names are the streams and buckets the roles' permissions name.
	Names Names
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
}

// Generate writes a complete NATS security set into opts.Dir: an operator,
// a system account and the TPCLUSTER account with JetStream (auth.conf); one
// user per role with its permissions (<role>.creds, a standard creds file:
// user JWT and nkey seed, 0600); a CA and a server certificate for loopback
// and opts.Hosts, and a client certificate for mutual TLS (ECDSA P-256;
// private keys 0600). It refuses to overwrite: a directory that already
// holds any of these files is an error, since replacing the account would
// strand the JetStream data stored under it.
//
// The operator and account seeds are kept in signing.json (0600), outside
// the set Exists checks: Rotate needs them to issue a role a new credential
// and revoke the old one. Keep that file off the servers and the pods.
func Generate(opts Options) error {
	if opts.Dir == "" {
		return errors.New("natsauth: generate: no directory")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CertTTL == 0 {
		opts.CertTTL = 365 * 24 * time.Hour
	}
	if opts.UserTTL < 0 || opts.CertTTL < 0 {
		return errors.New("natsauth: generate: negative validity")
	}
	for _, h := range opts.Hosts {
		if h == "" || strings.ContainsAny(h, " ,/") {
			return fmt.Errorf("natsauth: generate: host %q: want a DNS name or an IP address", h)
		}
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return fmt.Errorf("natsauth: generate: %w", err)
	}
	for _, name := range append(allFiles(), SigningFile) {
		if _, err := os.Lstat(filepath.Join(opts.Dir, name)); err == nil {
			return fmt.Errorf("natsauth: generate: %s: %w (a new set goes into a new directory)", filepath.Join(opts.Dir, name), os.ErrExist)
		}
	}
	files, err := build(opts)
	if err != nil {
		return fmt.Errorf("natsauth: generate: %w", err)
	}
	for _, f := range files {
		if err := writeNew(filepath.Join(opts.Dir, f.name), f.data, f.perm); err != nil {
			return fmt.Errorf("natsauth: generate: %w", err)
		}
	}
	return nil
}

// Exists reports whether dir holds a set Generate wrote: every file
// present. Embedded servers reuse their set across restarts.
func Exists(dir string) bool {
	for _, name := range allFiles() {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return false
		}
	}
	return true
}

func allFiles() []string {
	names := []string{CAFile, ServerCertFile, ServerKeyFile, ClientCertFile, ClientKeyFile, AuthConfFile, TLSConfFile}
	for _, r := range Roles() {
		names = append(names, CredsFile(r))
	}
	return names
}

type file struct {
	name string
	data []byte
	perm os.FileMode
}

func build(opts Options) ([]file, error) {
	now := opts.Now()
	op, err := nkeys.CreateOperator()
	if err != nil {
		return nil, err
	}
	opPub, _ := op.PublicKey()
	sys, err := nkeys.CreateAccount()
	if err != nil {
		return nil, err
	}
	sysPub, _ := sys.PublicKey()
	acct, err := nkeys.CreateAccount()
	if err != nil {
		return nil, err
	}
	acctPub, _ := acct.PublicKey()

	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "tpcluster"
	oc.SystemAccount = sysPub
	oc.IssuedAt = now.Unix()
	opJWT, err := oc.Encode(op)
	if err != nil {
		return nil, fmt.Errorf("operator: %w", err)
	}
	sc := jwt.NewAccountClaims(sysPub)
	sc.Name = "SYS"
	sysJWT, err := sc.Encode(op)
	if err != nil {
		return nil, fmt.Errorf("system account: %w", err)
	}
	ac := jwt.NewAccountClaims(acctPub)
	ac.Name = AccountName
	// JetStream on, unlimited: the streams set their own limits.
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1, MaxAckPending: -1}
	acctJWT, err := ac.Encode(op)
	if err != nil {
		return nil, fmt.Errorf("account: %w", err)
	}

	var files []file
	for _, role := range Roles() {
		perms, err := Permissions(role, opts.Names)
		if err != nil {
			return nil, err
		}
		creds, err := userCreds(acct, role, perms, now, opts.UserTTL)
		if err != nil {
			return nil, fmt.Errorf("user %s: %w", role, err)
		}
		files = append(files, file{CredsFile(role), creds, 0o600})
	}

	sign := signing{Operator: opJWT, SysAccount: sysPub, SysJWT: sysJWT, Account: acctJWT}
	opSeed, err := op.Seed()
	if err != nil {
		return nil, err
	}
	acctSeed, err := acct.Seed()
	if err != nil {
		return nil, err
	}
	sign.OperatorSeed, sign.AccountSeed = string(opSeed), string(acctSeed)
	signData, err := json.Marshal(sign)
	if err != nil {
		return nil, err
	}
	files = append(files, file{SigningFile, signData, 0o600})
	files = append(files, file{AuthConfFile, authConf(sign), 0o644})

	tlsFiles, err := certificates(opts, now)
	if err != nil {
		return nil, err
	}
	return append(files, tlsFiles...), nil
}

// authConf formats the nats-server fragment from the operator, system
// account and account JWTs in s.
func authConf(s signing) []byte {
	acctPub := accountSubject(s.Account)
	return []byte(fmt.Sprintf(`# tpcluster NATS accounts (docs/NATS-SECURITY.md), written by natsauth.
# Decentralized JWT authentication: the operator signs the accounts, the
# TPCLUSTER account signs one user per role. Nothing here is secret.
operator: %q
system_account: %s
resolver: MEMORY
resolver_preload: {
  %s: %q
  %s: %q
}
`, s.Operator, s.SysAccount, s.SysAccount, s.SysJWT, acctPub, s.Account))
}

// userCreds issues role's user JWT, signed by the account, and formats it
// with the user's seed as a creds file.
func userCreds(acct nkeys.KeyPair, role Role, perms jwt.Permissions, now time.Time, ttl time.Duration) ([]byte, error) {
	u, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	uPub, _ := u.PublicKey()
	uc := jwt.NewUserClaims(uPub)
	uc.Name = string(role)
	uc.IssuedAt = now.Unix()
	if ttl > 0 {
		uc.Expires = now.Add(ttl).Unix()
	}
	uc.Permissions = perms
	userJWT, err := uc.Encode(acct)
	if err != nil {
		return nil, err
	}
	seed, err := u.Seed()
	if err != nil {
		return nil, err
	}
	return jwt.FormatUserConfig(userJWT, seed)
}

// certificates makes the CA, the server certificate and the client
// certificate, and the TLS fragment naming them.
func certificates(opts Options, now time.Time) ([]file, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	notBefore, notAfter := now.Add(-time.Minute), now.Add(opts.CertTTL)
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "tpcluster NATS CA"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	ca, _ := x509.ParseCertificate(caDER)

	leaf := func(cn string, usage x509.ExtKeyUsage, hosts []string) ([]byte, []byte, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    notBefore,
			NotAfter:     notAfter,
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		return pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", keyDER), nil
	}
	hosts := append([]string{"127.0.0.1", "::1", "localhost"}, opts.Hosts...)
	srvCert, srvKey, err := leaf("tpcluster NATS server", x509.ExtKeyUsageServerAuth, hosts)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	cliCert, cliKey, err := leaf("tpcluster NATS client", x509.ExtKeyUsageClientAuth, nil)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	abs, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	tlsConf := fmt.Sprintf(`# TLS of the NATS client listener, written by natsauth. Clients check the
# server against ca.pem (--nats-ca); add "verify: true" to require client
# certificates too (--nats-cert, --nats-key).
tls {
  cert_file: %s
  key_file: %s
  ca_file: %s
  timeout: 2
}
`, strconv.Quote(filepath.Join(abs, ServerCertFile)), strconv.Quote(filepath.Join(abs, ServerKeyFile)), strconv.Quote(filepath.Join(abs, CAFile)))
	return []file{
		{CAFile, pemBlock("CERTIFICATE", caDER), 0o644},
		{ServerCertFile, srvCert, 0o644},
		{ServerKeyFile, srvKey, 0o600},
		{ClientCertFile, cliCert, 0o644},
		{ClientKeyFile, cliKey, 0o600},
		{TLSConfFile, []byte(tlsConf), 0o644},
	}, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		// crypto/rand does not fail on supported platforms (Go 1.24+).
		panic(err)
	}
	return n
}

// writeNew creates name exclusively with mode perm, whatever the umask, and
// writes data, synced.
func writeNew(name string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
	}
	return err
}
