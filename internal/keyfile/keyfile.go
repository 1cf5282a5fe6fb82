package keyfile

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"github.com/tpcluster/tpcluster/internal/atomicfile"
)

// Version is the value of the version member of every key file.
const Version = "trustplane-key-v1"

// Alg is the only algorithm a key file may name.
const Alg = "EdDSA"

// maxFileBytes bounds what ReadPublic and ReadPrivate read: a key file is
// about 200 bytes, and a larger one is not a key file.
const maxFileBytes = 64 << 10

// maxKIDBytes bounds a key id.
const maxKIDBytes = 256

// PublicKey is a public key and its key id, as read from a NAME.pub file.
type PublicKey struct {
	KID string
	Key ed25519.PublicKey // always ed25519.PublicKeySize bytes
}

// PrivateKey is an Ed25519 private key and its key id, as read from a
// NAME.key file. The seed is unexported and never printed: String,
// GoString, Format and MarshalJSON redact it.
type PrivateKey struct {
	kid  string
	priv ed25519.PrivateKey
}

// Generate returns a new random key. If kid is empty, the key id is the RFC
// 7638 thumbprint of the public key (SPEC §10.3).
func Generate(kid string) (*PrivateKey, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(rand.Reader, seed); err != nil {
		return nil, fmt.Errorf("keyfile: generate: %w", err)
	}
	return FromSeed(seed, kid)
}

// FromSeed returns the key with the given 32-byte seed. If kid is empty, the
// key id is the RFC 7638 thumbprint of the public key. It is meant for tests
// and for deterministic fixtures; use Generate for real keys.
func FromSeed(seed []byte, kid string) (*PrivateKey, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("keyfile: seed is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	if kid == "" {
		kid = Thumbprint(priv.Public().(ed25519.PublicKey))
	}
	if err := checkKID(kid); err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	return &PrivateKey{kid: kid, priv: priv}, nil
}

// KID returns the key id.
func (k *PrivateKey) KID() string { return k.kid }

// Public returns the public half with the same key id.
func (k *PrivateKey) Public() *PublicKey {
	return &PublicKey{KID: k.kid, Key: bytes.Clone(k.priv.Public().(ed25519.PublicKey))}
}

// Sign returns the Ed25519 signature of msg.
func (k *PrivateKey) Sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }

// String returns a redacted description naming only the key id.
// Value receivers, so a copied PrivateKey redacts itself too.
func (k PrivateKey) String() string {
	return fmt.Sprintf("keyfile.PrivateKey{kid: %q, seed: REDACTED}", k.kid)
}

// GoString is String, so %#v redacts too.
func (k PrivateKey) GoString() string { return k.String() }

// Format prints String for every verb, so no fmt verb (%x, %+v, %#v ...)
// reaches the seed.
func (k PrivateKey) Format(f fmt.State, verb rune) { io.WriteString(f, k.String()) }

// MarshalJSON returns String as a JSON string: encoding/json (and slog's
// JSON handler) never sees the seed. Write produces the key file format.
func (k PrivateKey) MarshalJSON() ([]byte, error) { return json.Marshal(k.String()) }

// Thumbprint returns the RFC 7638 JWK thumbprint of an Ed25519 public key
// (RFC 8037 §2): the unpadded base64url SHA-256 of its required members in
// lexical order, {"crv":"Ed25519","kty":"OKP","x":"<key>"}.
func Thumbprint(pub ed25519.PublicKey) string {
	// Built by hand: the member order and the absence of whitespace are the
	// contract, and base64url text needs no JSON escaping.
	jwk := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(jwk))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Write writes the key to base+".key" (mode 0600) and then its public half
// to base+".pub" (mode 0644). It refuses to overwrite an existing file; if
// the .pub file cannot be written, the .key file it created is removed.
func (k *PrivateKey) Write(base string) error {
	keyDoc, pubDoc, err := k.documents()
	if err != nil {
		return fmt.Errorf("keyfile: write %s: %w", base, err)
	}
	if _, err := os.Lstat(base + ".pub"); err == nil {
		return fmt.Errorf("keyfile: write %s.pub: %w", base, os.ErrExist)
	}
	if err := atomicfile.Create(base+".key", keyDoc, 0o600); err != nil {
		return fmt.Errorf("keyfile: %w", err)
	}
	if err := atomicfile.Create(base+".pub", pubDoc, 0o644); err != nil {
		os.Remove(base + ".key") // we created it just now
		return fmt.Errorf("keyfile: %w", err)
	}
	return nil
}

// documents returns the contents of k's .key and .pub files.
func (k *PrivateKey) documents() (key, pub []byte, err error) {
	pubB64 := base64.RawURLEncoding.EncodeToString(k.priv.Public().(ed25519.PublicKey))
	key, err = json.MarshalIndent(privateFile{
		Version: Version, KID: k.kid, Alg: Alg, PublicKey: pubB64,
		Seed: base64.RawURLEncoding.EncodeToString(k.priv.Seed()),
	}, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	pub, err = json.MarshalIndent(publicFile{Version: Version, KID: k.kid, Alg: Alg, PublicKey: pubB64}, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	return append(key, '\n'), append(pub, '\n'), nil
}

// publicFile and privateFile are the on-disk formats of SPEC §10.3, used
// for writing only; reading goes through parseFile, which is stricter than
// encoding/json (duplicates, case-insensitive names).
type publicFile struct {
	Version   string `json:"version"`
	KID       string `json:"kid"`
	Alg       string `json:"alg"`
	PublicKey string `json:"public_key_b64url"`
}

type privateFile struct {
	Version   string `json:"version"`
	KID       string `json:"kid"`
	Alg       string `json:"alg"`
	PublicKey string `json:"public_key_b64url"`
	Seed      string `json:"private_key_seed_b64url"`
}

func checkKID(kid string) error {
	if kid == "" {
		return errors.New("kid is empty")
	}
	if len(kid) > maxKIDBytes {
		return fmt.Errorf("kid is longer than %d bytes", maxKIDBytes)
	}
	if !utf8.ValidString(kid) {
		return errors.New("kid is not valid UTF-8")
	}
	for _, r := range kid {
		if r < 0x20 || r == 0x7f {
			return errors.New("kid holds a control character")
		}
	}
	return nil
}
