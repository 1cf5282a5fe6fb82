package natsx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/tpcluster/tpcluster/internal/cliflag"
)

// maxAuthFileBytes bounds a creds, CA, certificate or key file: each is a
// few kilobytes.
const maxAuthFileBytes = 1 << 20

// ClientAuth is how a client proves who it is to NATS and checks the
// server: a creds file (user JWT and nkey seed, one per role,
// docs/NATS-SECURITY.md), a CA to verify the server's certificate, and a
// client certificate for mutual TLS. The zero value connects without
// credentials and without TLS, which only an unlocked development server
// accepts.
//
// Every command registers the same flags with RegisterFlags, calls Validate
// once at start (a bad file exits 2 before anything listens), then connects
// with ConnectAuth.
type ClientAuth struct {
	CredsFile string // --nats-creds
	CAFile    string // --nats-ca
	CertFile  string // --nats-cert
	KeyFile   string // --nats-key

	tls     *tls.Config // built by Validate; nil without --nats-ca or --nats-cert
	expires time.Time   // the user JWT's expiry, zero if none
}

// RegisterFlags adds --nats-creds, --nats-ca, --nats-cert and --nats-key to
// fs (each also TPCLUSTER_NATS_…, through cliflag.ApplyEnv).
func (a *ClientAuth) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&a.CredsFile, "nats-creds", "", "NATS credentials of this role: a creds file (user JWT and nkey seed), mode 0600")
	fs.StringVar(&a.CAFile, "nats-ca", "", "CA certificate (PEM) that signed the NATS server's certificate; turns TLS on")
	fs.StringVar(&a.CertFile, "nats-cert", "", "client certificate (PEM) for mutual TLS with NATS; needs --nats-key")
	fs.StringVar(&a.KeyFile, "nats-key", "", "private key (PEM, mode 0600) of --nats-cert")
}

// Enabled reports whether any credential or TLS setting is given.
func (a *ClientAuth) Enabled() bool {
	return a.CredsFile != "" || a.CAFile != "" || a.CertFile != "" || a.KeyFile != ""
}

// Validate reads every file given and reports each problem as a
// configuration problem naming flag, variable and file: unreadable, not
// 0600 where it holds a secret, not what it should hold, an expired
// credential. now is the clock the expiry is checked against.
func (a *ClientAuth) Validate(now time.Time) []error {
	var errs []error
	bad := func(name, file, msg string) { errs = append(errs, cliflag.Problem(name, file, msg)) }
	a.tls, a.expires = nil, time.Time{}

	if a.CredsFile != "" {
		if exp, err := checkCreds(a.CredsFile, now); err != nil {
			bad("nats-creds", a.CredsFile, err.Error())
		} else {
			a.expires = exp
		}
	}
	var conf *tls.Config
	if a.CAFile != "" || a.CertFile != "" || a.KeyFile != "" {
		conf = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if a.CAFile != "" {
		data, _, err := readAuthFile(a.CAFile)
		if err != nil {
			bad("nats-ca", a.CAFile, err.Error())
		} else {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(data) {
				bad("nats-ca", a.CAFile, "holds no PEM certificate")
			} else {
				conf.RootCAs = pool
			}
		}
	}
	switch {
	case a.CertFile != "" && a.KeyFile == "":
		bad("nats-key", a.KeyFile, "--nats-cert needs --nats-key")
	case a.CertFile == "" && a.KeyFile != "":
		bad("nats-cert", a.CertFile, "--nats-key needs --nats-cert")
	case a.CertFile != "":
		certPEM, _, certErr := readAuthFile(a.CertFile)
		if certErr != nil {
			bad("nats-cert", a.CertFile, certErr.Error())
		}
		keyPEM, mode, keyErr := readAuthFile(a.KeyFile)
		if keyErr != nil {
			bad("nats-key", a.KeyFile, keyErr.Error())
		} else if err := checkPrivateMode(mode); err != nil {
			bad("nats-key", a.KeyFile, err.Error())
			keyErr = err
		}
		if certErr == nil && keyErr == nil {
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				// The error of X509KeyPair never holds key material.
				bad("nats-cert", a.CertFile, fmt.Sprintf("with --nats-key %s: %v", a.KeyFile, err))
			} else {
				conf.Certificates = []tls.Certificate{pair}
			}
		}
	}
	if len(errs) == 0 {
		a.tls = conf
	}
	return errs
}

// Expires returns when the credential of --nats-creds expires, zero if it
// does not (or none is given). Valid after Validate.
func (a *ClientAuth) Expires() time.Time { return a.expires }

// Options are the nats.go options of a validated ClientAuth, for one-shot
// clients that connect with nats.Connect (long-lived nodes use
// ConnectAuth). A nil ClientAuth has none.
func (a *ClientAuth) Options() []nats.Option {
	if a == nil {
		return nil
	}
	var opts []nats.Option
	if a.CredsFile != "" {
		// Read at each (re)connect, so a rotated file is picked up.
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	}
	if a.tls != nil {
		opts = append(opts, nats.Secure(a.tls.Clone()))
	}
	return opts
}

// checkCreds checks a creds file: mode 0600, a user JWT that decodes and
// has not expired, and a user seed. It returns the JWT's expiry.
func checkCreds(path string, now time.Time) (time.Time, error) {
	data, mode, err := readAuthFile(path)
	if err != nil {
		return time.Time{}, err
	}
	if err := checkPrivateMode(mode); err != nil {
		return time.Time{}, err
	}
	token, err := jwt.ParseDecoratedJWT(data)
	if err != nil {
		return time.Time{}, errors.New("not a NATS creds file (no user JWT)")
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return time.Time{}, errors.New("not a NATS creds file (the JWT is not a user JWT)")
	}
	if _, err := jwt.ParseDecoratedUserNKey(data); err != nil {
		return time.Time{}, errors.New("not a NATS creds file (no user nkey seed)")
	}
	var exp time.Time
	if uc.Expires > 0 {
		exp = time.Unix(uc.Expires, 0)
		if !now.Before(exp) {
			return exp, fmt.Errorf("credential of user %q expired at %s", uc.Name, exp.UTC().Format(time.RFC3339))
		}
	}
	return exp, nil
}

// readAuthFile reads a regular file of bounded size and returns its mode as
// seen on the open descriptor.
func readAuthFile(path string) ([]byte, os.FileMode, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, 0, errors.New("no such file")
		}
		if errors.Is(err, os.ErrPermission) {
			return nil, 0, errors.New("not readable: permission denied")
		}
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, errors.New("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxAuthFileBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("read: %w", err)
	}
	if len(data) > maxAuthFileBytes {
		return nil, 0, fmt.Errorf("larger than %d bytes", maxAuthFileBytes)
	}
	return data, fi.Mode(), nil
}

// checkPrivateMode refuses a secret file that group or others may use
// (like key files, SPEC §10.3).
func checkPrivateMode(mode os.FileMode) error {
	if mode.Perm()&0o077 != 0 {
		return fmt.Errorf("holds a secret but has mode %04o; group and others must have no access (chmod 600)", mode.Perm())
	}
	return nil
}

// ConnectError is a first connection that failed. Kind says why: "TLS"
// (handshake or certificate), "auth" (credentials refused or expired),
// "refused" (nothing listens) or "unreachable" (anything else: timeout, no
// route). TLS and auth failures are Permanent: retrying cannot help, and a
// command exits 2 on them before anything listens.
type ConnectError struct {
	URL  string // the servers tried, credentials redacted
	Kind string
	Err  error
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("natsx: connect %s: %s: %v", e.URL, e.Kind, e.Err)
}

func (e *ConnectError) Unwrap() error { return e.Err }

// NewConnectError classifies err, the failure of a first connection to
// urls. nats.go reports servers that refused the connection as "no servers
// available": then each server is dialled once more (briefly) to tell
// "refused" (nothing listens) from "unreachable".
func NewConnectError(urls string, err error) *ConnectError {
	kind := classify(err)
	if kind == KindUnreachable && errors.Is(err, nats.ErrNoServers) {
		if allRefuse(urls) {
			kind = KindRefused
		}
		// "no servers available" names no server and no cause: add each
		// server's own dial error.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if cause := Unreachable(ctx, urls); cause != nil {
			err = fmt.Errorf("%w: %w", err, cause)
		}
	}
	return &ConnectError{URL: RedactURLs(urls), Kind: kind, Err: err}
}

// allRefuse reports whether every server of urls refuses a TCP connection.
func allRefuse(urls string) bool {
	n := 0
	for _, raw := range strings.Split(urls, ",") {
		raw = strings.TrimSpace(raw)
		if !strings.Contains(raw, "://") {
			raw = "nats://" + raw
		}
		u, err := url.Parse(raw)
		if err != nil || u.Hostname() == "" {
			return false
		}
		port := u.Port()
		if port == "" {
			port = "4222"
		}
		c, err := net.DialTimeout("tcp", net.JoinHostPort(u.Hostname(), port), 500*time.Millisecond)
		if err == nil {
			c.Close()
			return false
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return false
		}
		n++
	}
	return n > 0
}

// Permanent reports whether the failure is one of configuration (TLS or
// credentials), not of reach.
func (e *ConnectError) Permanent() bool { return e.Kind == KindTLS || e.Kind == KindAuth }

// Kinds of ConnectError.
const (
	KindTLS         = "TLS"
	KindAuth        = "auth"
	KindRefused     = "refused"
	KindUnreachable = "unreachable"
)

// classify names the kind of a connection error.
func classify(err error) string {
	var (
		verr  *tls.CertificateVerificationError
		herr  x509.HostnameError
		uaerr x509.UnknownAuthorityError
		cierr x509.CertificateInvalidError
		alert tls.AlertError
		rherr tls.RecordHeaderError
		operr *net.OpError
	)
	switch {
	case errors.Is(err, nats.ErrTLS), errors.Is(err, nats.ErrSecureConnRequired), errors.Is(err, nats.ErrSecureConnWanted),
		errors.Is(err, nats.ErrClientCertOrRootCAsRequired),
		errors.As(err, &verr), errors.As(err, &herr), errors.As(err, &uaerr), errors.As(err, &cierr),
		errors.As(err, &alert), errors.As(err, &rherr),
		// An alert the server sent (a client certificate it wants, or
		// refuses): crypto/tls reports it as a "remote error".
		errors.As(err, &operr) && operr.Op == "remote error":
		return KindTLS
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired),
		errors.Is(err, nats.ErrAuthRevoked), errors.Is(err, nats.ErrAccountAuthExpired):
		return KindAuth
	case errors.Is(err, syscall.ECONNREFUSED):
		return KindRefused
	}
	return KindUnreachable
}
