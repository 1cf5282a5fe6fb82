package keyfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// MaxDirKeys bounds the key files ReadPrivateDir reads from one directory:
// a rotation holds two or three keys; more than this is a mistake, and each
// file past it is refused rather than read.
const MaxDirKeys = 16

// ReadPrivateDir reads every NAME.key file directly in dir, in name order,
// each as ReadPrivate does (the 0600 rule included), for a node whose keys
// an operator adds and removes while it runs. It returns the keys it read
// and one error per NAME.key file it refused, each naming the file; err is
// set only when dir itself cannot be read. Other names are ignored without
// a word: a NAME.pub beside its key is normal, and names starting with "."
// are editors' temporary files or the "..data" links of a Kubernetes
// Secret volume (whose NAME.key links are followed). Of two files holding
// one key, the first is kept; a file whose kid another file already holds
// with a different key is refused, since a JWKS cannot list both.
func ReadPrivateDir(dir string) (keys []*PrivateKey, refused []error, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("keyfile: %w", err)
	}
	byKID := map[string]string{} // kid -> file that holds it
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".key") || strings.HasPrefix(name, ".") || e.IsDir() {
			continue
		}
		path := filepath.Join(dir, name)
		// Opening a FIFO or device would block or worse; a symlink is
		// followed and its target checked by ReadPrivate.
		if t := e.Type(); t&^fs.ModeSymlink != 0 && !t.IsRegular() {
			refused = append(refused, fmt.Errorf("keyfile: %s: not a regular file", path))
			continue
		}
		if len(keys) == MaxDirKeys {
			refused = append(refused, fmt.Errorf("keyfile: %s: more than %d key files in %s", path, MaxDirKeys, dir))
			continue
		}
		k, err := ReadPrivate(path)
		if err != nil {
			refused = append(refused, err) // names the file
			continue
		}
		if other, ok := byKID[k.KID()]; ok {
			if !findKey(keys, k) {
				refused = append(refused, fmt.Errorf("keyfile: %s: kid %q is already held by %s with another key", path, k.KID(), other))
			}
			continue
		}
		byKID[k.KID()] = path
		keys = append(keys, k)
	}
	return keys, refused, nil
}

// findKey reports whether keys holds k's key under k's kid.
func findKey(keys []*PrivateKey, k *PrivateKey) bool {
	for _, h := range keys {
		if h.KID() == k.KID() && h.Public().Key.Equal(k.Public().Key) {
			return true
		}
	}
	return false
}
