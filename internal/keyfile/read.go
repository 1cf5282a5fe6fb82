package keyfile

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode/utf8"
)

// ReadPublic reads a NAME.pub file. It refuses a NAME.key file: a host that
// only verifies should never be handed the seed.
func ReadPublic(path string) (*PublicKey, error) {
	data, _, err := readFile(path)
	if err != nil {
		return nil, err
	}
	p, err := parsePublic(data)
	if err != nil {
		return nil, fmt.Errorf("keyfile: %s: %w", path, err)
	}
	return p, nil
}

// ParsePublic parses the contents of a NAME.pub file.
func ParsePublic(data []byte) (*PublicKey, error) {
	p, err := parsePublic(data)
	if err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	return p, nil
}

func parsePublic(data []byte) (*PublicKey, error) {
	m, err := parseFile(data)
	if err != nil {
		return nil, err
	}
	return publicFromMembers(m)
}

// ReadPrivate reads a NAME.key file. It refuses a file that group or others
// may read, write or execute (SPEC §10.3: a private key file must be 0600),
// before using its contents; a public key file is refused as such first,
// since "chmod 600" would be the wrong advice for it.
func ReadPrivate(path string) (*PrivateKey, error) {
	data, mode, err := readFile(path)
	if err != nil {
		return nil, err
	}
	m, parseErr := parseFile(data)
	if parseErr == nil && isPublic(m) {
		return nil, fmt.Errorf("keyfile: %s: this is a public key (no private_key_seed_b64url); give the NAME.key file", path)
	}
	if err := checkMode(mode); err != nil {
		return nil, fmt.Errorf("keyfile: %s: %w", path, err)
	}
	if parseErr != nil {
		return nil, fmt.Errorf("keyfile: %s: %w", path, parseErr)
	}
	k, err := privateFromMembers(m)
	if err != nil {
		return nil, fmt.Errorf("keyfile: %s: %w", path, err)
	}
	return k, nil
}

func checkMode(mode os.FileMode) error {
	if mode.Perm()&0o077 != 0 {
		return fmt.Errorf("private key file has mode %04o; group and others must have no access (chmod 600)", mode.Perm())
	}
	return nil
}

// readFile reads a regular file of at most maxFileBytes, returning its mode
// as seen on the open descriptor (no window between the check and the read).
func readFile(path string) ([]byte, os.FileMode, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("keyfile: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("keyfile: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("keyfile: %s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("keyfile: read %s: %w", path, err)
	}
	if len(data) > maxFileBytes {
		return nil, 0, fmt.Errorf("keyfile: %s: larger than %d bytes", path, maxFileBytes)
	}
	return data, fi.Mode(), nil
}

var (
	publicMembers  = []string{"version", "kid", "alg", "public_key_b64url"}
	privateMembers = []string{"version", "kid", "alg", "public_key_b64url", "private_key_seed_b64url"}
)

func publicFromMembers(m map[string]string) (*PublicKey, error) {
	if _, ok := m["private_key_seed_b64url"]; ok {
		return nil, errors.New("this is a private key (it holds private_key_seed_b64url); give the NAME.pub file")
	}
	if err := checkMembers(m, publicMembers); err != nil {
		return nil, err
	}
	pub, err := decodeKeyBytes(m, "public_key_b64url")
	if err != nil {
		return nil, err
	}
	return &PublicKey{KID: m["kid"], Key: ed25519.PublicKey(pub)}, nil
}

// isPublic reports a public key file's members: a private one's minus the
// seed.
func isPublic(m map[string]string) bool {
	_, seed := m["private_key_seed_b64url"]
	_, pub := m["public_key_b64url"]
	return pub && !seed
}

func privateFromMembers(m map[string]string) (*PrivateKey, error) {
	if err := checkMembers(m, privateMembers); err != nil {
		return nil, err
	}
	pub, err := decodeKeyBytes(m, "public_key_b64url")
	if err != nil {
		return nil, err
	}
	seed, err := decodeKeyBytes(m, "private_key_seed_b64url")
	if err != nil {
		return nil, err
	}
	priv := ed25519.NewKeyFromSeed(seed)
	if !bytes.Equal(priv.Public().(ed25519.PublicKey), pub) {
		return nil, errors.New("public_key_b64url does not match private_key_seed_b64url")
	}
	return &PrivateKey{kid: m["kid"], priv: priv}, nil
}

// checkMembers requires exactly the members want, and checks version, alg
// and kid.
func checkMembers(m map[string]string, want []string) error {
	for _, name := range want {
		if _, ok := m[name]; !ok {
			return fmt.Errorf("missing member %q", name)
		}
	}
	if len(m) != len(want) {
		for name := range m {
			known := false
			for _, w := range want {
				known = known || w == name
			}
			if !known {
				return fmt.Errorf("unknown member %q", name)
			}
		}
	}
	if m["version"] != Version {
		return fmt.Errorf("version is %q, want %q", m["version"], Version)
	}
	if m["alg"] != Alg {
		return fmt.Errorf("alg is %q, want %q", m["alg"], Alg)
	}
	return checkKID(m["kid"])
}

// decodeKeyBytes decodes member name as canonical unpadded base64url of
// exactly 32 bytes. Errors never include the value: it may be a seed.
func decodeKeyBytes(m map[string]string, name string) ([]byte, error) {
	s := m[name]
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	// The decoder skips CR and LF; re-encoding catches that and any other
	// non-canonical spelling.
	if err != nil || base64.RawURLEncoding.EncodeToString(b) != s {
		return nil, fmt.Errorf("%s is not canonical unpadded base64url", name)
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("%s holds %d bytes, want 32", name, len(b))
	}
	return b, nil
}

// parseFile parses a key file: one JSON object whose members are all
// strings, with no duplicate names (a duplicate would let two parsers read
// two different keys from one file) and nothing after it.
func parseFile(data []byte) (map[string]string, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	m := make(map[string]string)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errors.New("malformed JSON")
		}
		name, _ := tok.(string)
		tok, err = dec.Token()
		if err != nil {
			return nil, errors.New("malformed JSON")
		}
		v, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("member %q is not a string", name)
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("duplicate member %q", name)
		}
		m[name] = v
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errors.New("malformed JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return m, nil
}
