package keyfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/tpcluster/tpcluster/internal/atomicfile"
)

// LoadOrCreate returns the key in base+".key", or, when that file does not
// exist, generates one with kid and writes it there (mode 0600) and its
// public half to base+".pub" (mode 0644). It is for tools that keep their
// own keys (the demo, the load generator), never for keys an operator
// manages.
//
// Both files are written with internal/atomicfile, so a crash leaves
// either no .key or a complete one, never a truncated file that every later
// run would refuse; the .key with atomicfile.Create, so of two processes
// creating the same key at once one wins and both return its key. An unreadable or malformed .key is
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
	switch err := atomicfile.Create(base+".key", keyDoc, 0o600); {
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
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	// A .pub left from an earlier key is replaced: the .key decides.
	if err := atomicfile.Write(base+".pub", pubDoc, 0o644); err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
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
	if err := atomicfile.Write(base+".pub", pubDoc, 0o644); err != nil {
		return fmt.Errorf("keyfile: %w", err)
	}
	return nil
}
