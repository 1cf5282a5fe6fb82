package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// check fails unless name holds want with mode perm and dir holds no
// temporary file.
func check(t *testing.T, name, want string, perm os.FileMode) {
	t.Helper()
	got, err := os.ReadFile(name)
	if err != nil || string(got) != want {
		t.Errorf("ReadFile(%s) = %q, %v; want %q", name, got, err, want)
	}
	if fi, err := os.Stat(name); err != nil || fi.Mode().Perm() != perm {
		t.Errorf("mode of %s = %v (%v), want %04o", name, fi.Mode().Perm(), err, perm)
	}
	ents, err := os.ReadDir(filepath.Dir(name))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestWrite(t *testing.T) {
	old := syscall.Umask(0o077) // the mode must not depend on it
	t.Cleanup(func() { syscall.Umask(old) })
	name := filepath.Join(t.TempDir(), "doc.json")
	if err := Write(name, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	check(t, name, "one", 0o644)
	if err := Write(name, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	check(t, name, "two", 0o600)
	if err := Write(filepath.Join(t.TempDir(), "no", "dir"), nil, 0o600); err == nil || !strings.Contains(err.Error(), "write ") {
		t.Errorf("Write into a missing directory = %v, want an error naming the file", err)
	}
}

func TestCreate(t *testing.T) {
	name := filepath.Join(t.TempDir(), "k.key")
	if err := Create(name, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Create(name, []byte("second"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create over an existing file = %v, want fs.ErrExist", err)
	}
	check(t, name, "first", 0o600)
}

// TestCreateConcurrent: of many concurrent Creates exactly one wins, and
// the file holds its data whole.
func TestCreateConcurrent(t *testing.T) {
	name := filepath.Join(t.TempDir(), "shared")
	const n = 8
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		winner string
		wins   int
	)
	for i := range n {
		wg.Go(func() {
			data := strings.Repeat(string(rune('a'+i)), 4096)
			err := Create(name, []byte(data), 0o600)
			if err != nil && !errors.Is(err, fs.ErrExist) {
				t.Errorf("Create #%d = %v", i, err)
			}
			if err == nil {
				mu.Lock()
				winner, wins = data, wins+1
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d Creates succeeded, want exactly 1", wins)
	}
	check(t, name, winner, 0o600)
}
