package keyfile

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// modes returns the permission bits of base's .key and .pub files.
func modes(t *testing.T, base string) (key, pub os.FileMode) {
	t.Helper()
	for _, f := range []struct {
		ext string
		to  *os.FileMode
	}{{".key", &key}, {".pub", &pub}} {
		fi, err := os.Stat(base + f.ext)
		if err != nil {
			t.Fatal(err)
		}
		*f.to = fi.Mode().Perm()
	}
	return key, pub
}

func TestLoadOrCreate(t *testing.T) {
	base := filepath.Join(t.TempDir(), "caller")
	// A stale .pub from an earlier key is replaced, not trusted.
	if err := os.WriteFile(base+".pub", []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := LoadOrCreate(base, "caller-1")
	if err != nil {
		t.Fatalf("LoadOrCreate(new) = %v", err)
	}
	if k.KID() != "caller-1" {
		t.Errorf("KID() = %q, want caller-1", k.KID())
	}
	if km, pm := modes(t, base); km != 0o600 || pm != 0o644 {
		t.Errorf("modes = .key %04o, .pub %04o; want 0600, 0644", km, pm)
	}
	pub, err := ReadPublic(base + ".pub")
	if err != nil {
		t.Fatalf("ReadPublic after LoadOrCreate = %v", err)
	}
	if !bytes.Equal(pub.Key, k.Public().Key) {
		t.Error(".pub does not hold the created key's public half")
	}

	again, err := LoadOrCreate(base, "other-kid")
	if err != nil {
		t.Fatalf("LoadOrCreate(existing) = %v", err)
	}
	if !bytes.Equal(again.Seed(), k.Seed()) || again.KID() != "caller-1" {
		t.Error("LoadOrCreate of an existing key returned another key")
	}

	// A .pub lost between the two writes is written again from the .key.
	if err := os.Remove(base + ".pub"); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(base, "caller-1"); err != nil {
		t.Fatal(err)
	}
	if pub, err := ReadPublic(base + ".pub"); err != nil || !bytes.Equal(pub.Key, k.Public().Key) {
		t.Errorf("rewritten .pub = %v, %v; want the key's public half", pub, err)
	}
}

func TestLoadOrCreateNeverOverwrites(t *testing.T) {
	base := filepath.Join(t.TempDir(), "k")
	for name, tc := range map[string]struct {
		data []byte
		mode os.FileMode
		want string
	}{
		"truncated":  {[]byte(`{"version":`), 0o600, "keyfile: " + base + ".key"},
		"loose_mode": {[]byte("{}"), 0o644, "chmod 600"},
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(base+".key", tc.data, tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(base+".key", tc.mode); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadOrCreate(base, "k"); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadOrCreate(%s .key) = %v, want an error containing %q", name, err, tc.want)
			}
			if got, _ := os.ReadFile(base + ".key"); !bytes.Equal(got, tc.data) {
				t.Errorf("the %s .key was changed to %q", name, got)
			}
		})
	}
}

// TestLoadOrCreateConcurrent: callers racing to create one key all get the
// key that ended up on disk.
func TestLoadOrCreateConcurrent(t *testing.T) {
	base := filepath.Join(t.TempDir(), "shared")
	const n = 8
	seeds := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			k, err := LoadOrCreate(base, "shared-1")
			if err != nil {
				t.Errorf("LoadOrCreate #%d = %v", i, err)
				return
			}
			seeds[i] = k.Seed()
		})
	}
	wg.Wait()
	disk, err := ReadPrivate(base + ".key")
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range seeds {
		if s != nil && !bytes.Equal(s, disk.Seed()) {
			t.Errorf("caller %d got a key that is not the one on disk", i)
		}
	}
	if pub, err := ReadPublic(base + ".pub"); err != nil || !bytes.Equal(pub.Key, disk.Public().Key) {
		t.Errorf(".pub after the race = %v, %v; want the .key's public half", pub, err)
	}
}
