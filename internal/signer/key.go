package signer

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
)

// Key is a caller's Ed25519 key. Its text forms (String, GoString, LogValue)
// show only the public key, so a Key can be logged or printed by mistake
// without leaking the seed (STYLE §7). A Key is immutable and safe for
// concurrent use.
type Key struct {
	priv ed25519.PrivateKey
	pub  string // base64url, no padding
}

// NewKey returns the key with the 32-byte Ed25519 seed.
func NewKey(seed []byte) (*Key, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("signer: key seed is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	return newKey(ed25519.NewKeyFromSeed(seed)), nil
}

// GenerateKey returns a new random key.
func GenerateKey() (*Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("signer: generate key: %w", err)
	}
	return newKey(priv), nil
}

func newKey(priv ed25519.PrivateKey) *Key {
	return &Key{priv: priv, pub: base64.RawURLEncoding.EncodeToString(priv.Public().(ed25519.PublicKey))}
}

// PublicKey returns the public key.
func (k *Key) PublicKey() ed25519.PublicKey {
	return k.priv.Public().(ed25519.PublicKey)
}

// PublicKeyB64 returns the public key as unpadded base64url: the text of a
// passport's cnf.public_key_b64url.
func (k *Key) PublicKeyB64() string { return k.pub }

// Seed returns a copy of the 32-byte seed, for writing key files.
func (k *Key) Seed() []byte { return k.priv.Seed() }

// String returns the public key only.
func (k Key) String() string { return "signer.Key{public_key_b64url:" + k.pub + "}" }

// GoString returns the public key only, so %#v does not print the seed.
func (k Key) GoString() string { return k.String() }

// LogValue redacts the private key.
func (k Key) LogValue() slog.Value {
	return slog.GroupValue(slog.String("public_key_b64url", k.pub), slog.String("private_key", "REDACTED"))
}

// sign signs msg. ed25519.Sign panics only on a wrong-length key, which a
// Key never holds.
func (k *Key) sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }
