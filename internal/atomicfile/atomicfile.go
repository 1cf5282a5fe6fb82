// Package atomicfile writes files so that a crash leaves the old contents or
// the new, never a torn file: a temporary file beside the target, its mode
// set whatever the umask, synced, then renamed (or linked, for a file that
// must not be replaced) into place, and the directory synced so the new
// name survives too.
//
// It is pure: the standard library only, no logging. Key files, the bundle
// cache, the demo and load generator worlds and bundlepub's outputs are
// written through it.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces name with data, mode perm.
func Write(name string, data []byte, perm os.FileMode) error {
	return write(name, data, perm, os.Rename)
}

// Create writes name with data, mode perm, only if name does not exist;
// otherwise it returns an error matching fs.ErrExist. Of two concurrent
// Creates of one name, exactly one succeeds.
func Create(name string, data []byte, perm os.FileMode) error {
	return write(name, data, perm, os.Link)
}

// write puts data in a synced temporary file beside name and places it with
// place (rename or link), then syncs the directory.
func write(name string, data []byte, perm os.FileMode, place func(tmp, name string) error) error {
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a link, or on failure; gone after a rename
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
		err = place(tmp, name)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	d, err := os.Open(dir)
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
