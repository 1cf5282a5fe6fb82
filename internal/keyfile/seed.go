package keyfile

import "bytes"

// Seed returns a copy of the 32-byte private seed. It exists for the caller
// side (internal/signer keys read from a NAME.key file); never log or send
// what it returns.
func (k *PrivateKey) Seed() []byte { return bytes.Clone(k.priv.Seed()) }
