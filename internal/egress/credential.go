package egress

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/go-jose/go-jose/v4"

	"github.com/tpcluster/tpcluster/internal/bundle"
)

// maxCredentialBytes bounds a secret or key file: either is a few
// kilobytes at most, and a larger one is a wrong path.
const maxCredentialBytes = 64 << 10

// Credential is what a node authenticates to one provider with: a client
// secret or a private key, read from a file named by a verifierd flag,
// never from the bundle. It redacts itself in logs and formatting.
type Credential struct {
	secret string // client_secret_basic, client_secret_post
	key    *signingKey
}

// signingKey is a private_key_jwt key and how it signs.
type signingKey struct {
	priv crypto.Signer
	alg  jose.SignatureAlgorithm
	kid  string // RFC 7638 thumbprint of the public key
}

// IsKey reports whether c is a private key (else a client secret).
func (c Credential) IsKey() bool { return c.key != nil }

// KID is the key id client assertions carry (the RFC 7638 JWK thumbprint of
// the public key, base64url); empty for a secret.
func (c Credential) KID() string {
	if c.key == nil {
		return ""
	}
	return c.key.kid
}

// Algorithm is the JWS algorithm of a key credential; empty for a secret.
func (c Credential) Algorithm() string {
	if c.key == nil {
		return ""
	}
	return string(c.key.alg)
}

// String never shows the secret or the key.
func (c Credential) String() string {
	if c.key != nil {
		return "egress key " + c.key.kid + " (" + string(c.key.alg) + ")"
	}
	return "egress client secret [redacted]"
}

// GoString is String, for %#v.
func (c Credential) GoString() string { return c.String() }

// LogValue is String, for slog.
func (c Credential) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Format makes every verb print String.
func (c Credential) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.String()) }

// suits reports whether c can authenticate with auth.
func (c Credential) suits(auth bundle.ClientAuth) error {
	switch {
	case auth.UsesSecret() && c.secret == "":
		return fmt.Errorf("%s needs a client secret (--egress-secret); the node holds a key for it", auth)
	case auth == bundle.PrivateKeyJWT && c.key == nil:
		return fmt.Errorf("%s needs a private key (--egress-key); the node holds a secret for it", auth)
	}
	return nil
}

// SecretCredential is a client secret.
func SecretCredential(secret string) (Credential, error) {
	if secret == "" {
		return Credential{}, errors.New("egress: empty client secret")
	}
	return Credential{secret: secret}, nil
}

// KeyCredential is a private_key_jwt key: RSA (RS256, at least 2048 bits),
// ECDSA P-256 (ES256) or Ed25519 (EdDSA). Most providers take RS256 or
// ES256; fewer take EdDSA.
func KeyCredential(priv crypto.Signer) (Credential, error) {
	var alg jose.SignatureAlgorithm
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return Credential{}, fmt.Errorf("egress: an RSA key of %d bits; at least 2048", k.N.BitLen())
		}
		alg = jose.RS256
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return Credential{}, errors.New("egress: an ECDSA key must be on P-256 (ES256)")
		}
		alg = jose.ES256
	case ed25519.PrivateKey:
		alg = jose.EdDSA
	default:
		return Credential{}, fmt.Errorf("egress: unsupported key type %T", priv)
	}
	jwk := jose.JSONWebKey{Key: priv.Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return Credential{}, fmt.Errorf("egress: key thumbprint: %w", err)
	}
	return Credential{key: &signingKey{priv: priv, alg: alg, kid: base64.RawURLEncoding.EncodeToString(tp)}}, nil
}

// ReadSecret reads a client secret file: its content without one trailing
// newline. The file must be a regular file readable by its owner only.
func ReadSecret(path string) (Credential, error) {
	data, err := readPrivateFile(path)
	if err != nil {
		return Credential{}, err
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	data = bytes.TrimSuffix(data, []byte("\r"))
	if len(data) == 0 {
		return Credential{}, fmt.Errorf("egress: %s: empty secret", path)
	}
	if bytes.ContainsAny(data, "\r\n") {
		return Credential{}, fmt.Errorf("egress: %s: the secret spans several lines", path)
	}
	return Credential{secret: string(data)}, nil
}

// ReadKey reads a PEM "PRIVATE KEY" (PKCS #8) file for private_key_jwt. The
// file must be a regular file readable by its owner only.
func ReadKey(path string) (Credential, error) {
	data, err := readPrivateFile(path)
	if err != nil {
		return Credential{}, err
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return Credential{}, fmt.Errorf("egress: %s: not a PEM PRIVATE KEY (PKCS #8) file", path)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return Credential{}, fmt.Errorf("egress: %s: more than one PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return Credential{}, fmt.Errorf("egress: %s: %w", path, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return Credential{}, fmt.Errorf("egress: %s: unsupported key type %T", path, k)
	}
	c, err := KeyCredential(signer)
	if err != nil {
		return Credential{}, fmt.Errorf("%w (%s)", err, path)
	}
	return c, nil
}

// readPrivateFile reads a regular file of at most maxCredentialBytes whose
// mode (on the open descriptor) gives group and others no access.
func readPrivateFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("egress: %s: not a regular file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("egress: %s has mode %04o; group and others must have no access (chmod 600)", path, fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxCredentialBytes+1))
	if err != nil {
		return nil, fmt.Errorf("egress: read %s: %w", path, err)
	}
	if len(data) > maxCredentialBytes {
		return nil, fmt.Errorf("egress: %s: larger than %d bytes", path, maxCredentialBytes)
	}
	return data, nil
}
