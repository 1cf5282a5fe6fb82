package keyfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// LoadOrCreate returns the key in base+".key", or, when that file does not
// exist, generates one with kid and writes it there (mode 0600) and its
// public half to base+".pub" (mode 0644). It is for tools that keep their
// own keys (the demo, the load generator), never for keys an operator
// manages.
//
// Each file is written to a temporary file in the same directory, synced,
// and then linked or renamed into place, so a crash leaves either no .key
// or a complete one, never a truncated file that every later run would
// refuse. Of two processes creating the same key at once, one links its
// .key first and both return that key. An unreadable or malformed .key is
// an error, never overwritten.
func LoadOrCreate(base, kid string) (*PrivateKey, error) {
	k, err := ReadPrivate(base + ".key")
	if err == nil {
		return k, ensurePublic(k, base)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if k, err = Generate(kid); err != nil {
		return nil, err
	}
	keyDoc, pubDoc, err := k.documents()
	if err != nil {
		return nil, fmt.Errorf("keyfile: write %s.key: %w", base, err)
	}
	switch err := writeAtomic(base+".key", keyDoc, 0o600, false); {
	case errors.Is(err, fs.ErrExist):
		// Another process won the race: its key is the key, and the .pub
		// written below is its public half.
		if k, err = ReadPrivate(base + ".key"); err != nil {
			return nil, err
		}
		if _, pubDoc, err = k.documents(); err != nil {
			return nil, fmt.Errorf("keyfile: write %s.pub: %w", base, err)
		}
	case err != nil:
		return nil, err
	}
	// A .pub left from an earlier key is replaced: the .key decides.
	if err := writeAtomic(base+".pub", pubDoc, 0o644, true); err != nil {
		return nil, err
	}
	return k, nil
}

// ensurePublic writes base+".pub" for k when it is missing (a crash
// between the two writes of LoadOrCreate).
func ensurePublic(k *PrivateKey, base string) error {
	if _, err := os.Lstat(base + ".pub"); !errors.Is(err, fs.ErrNotExist) {
		return nil // present, or a problem the key's users will report
	}
	_, pubDoc, err := k.documents()
	if err != nil {
		return fmt.Errorf("keyfile: write %s.pub: %w", base, err)
	}
	return writeAtomic(base+".pub", pubDoc, 0o644, true)
}

// writeAtomic writes data to a synced temporary file beside name with mode
// perm (whatever the umask), then renames it over name (replace) or links
// it to name, failing with fs.ErrExist if name exists; then it syncs the
// directory so the new name survives a crash.
func writeAtomic(name string, data []byte, perm os.FileMode, replace bool) (err error) {
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return fmt.Errorf("keyfile: write %s: %w", name, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a link, or on failure; a no-op after a rename
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
	if err == nil {
		if replace {
			err = os.Rename(tmp, name)
		} else {
			err = os.Link(tmp, name)
		}
	}
	if err != nil {
		return fmt.Errorf("keyfile: write %s: %w", name, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil {
		return fmt.Errorf("keyfile: sync %s: %w", dir, err)
	}
	return nil
}
