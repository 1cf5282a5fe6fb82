package keyfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestReadPrivateDir: the keys of a node's key directory. Good keys are
// read in name order; a too-open key, a public key named .key, a FIFO and
// a kid held twice with different keys are refused, each naming its file;
// other names are ignored; a missing directory is an error.
func TestReadPrivateDir(t *testing.T) {
	dir := t.TempDir()
	write := func(name, kid string, mode os.FileMode) *PrivateKey {
		t.Helper()
		k, err := Generate(kid)
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Join(dir, strings.TrimSuffix(name, ".key"))
		if err := k.Write(base); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(base+".key", mode); err != nil {
			t.Fatal(err)
		}
		return k
	}
	b := write("b.key", "node-b", 0o600)
	a := write("a.key", "node-a", 0o400)
	write("open.key", "node-open", 0o644)
	write("twin.key", "node-a", 0o600) // node-a's kid, another key
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".a.key.swp"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.key"), 0o700); err != nil {
		t.Fatal(err)
	}
	pub, _ := os.ReadFile(filepath.Join(dir, "b.pub"))
	if err := os.WriteFile(filepath.Join(dir, "public.key"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.key"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A symlink to a good key elsewhere, as a Kubernetes Secret volume has.
	other := t.TempDir()
	c, _ := Generate("node-c")
	if err := c.Write(filepath.Join(other, "c")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(other, "c.key"), filepath.Join(dir, "c.key")); err != nil {
		t.Fatal(err)
	}

	keys, refused, err := ReadPrivateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range keys {
		kids = append(kids, k.KID())
	}
	if got, want := strings.Join(kids, ","), "node-a,node-b,node-c"; got != want {
		t.Errorf("ReadPrivateDir keys = %s, want %s", got, want)
	}
	if !keys[0].Public().Key.Equal(a.Public().Key) || !keys[1].Public().Key.Equal(b.Public().Key) {
		t.Error("ReadPrivateDir returned other keys than the files hold")
	}
	var msgs []string
	for _, e := range refused {
		msgs = append(msgs, e.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{"fifo.key: not a regular file", "open.key: private key file has mode 0644", "public.key: this is a public key", `twin.key: kid "node-a" is already held by`} {
		if !strings.Contains(all, want) {
			t.Errorf("refused = %q, want one containing %q", all, want)
		}
	}
	if len(refused) != 4 {
		t.Errorf("%d files refused, want 4: %q", len(refused), all)
	}
	if strings.Contains(all, "notes.txt") || strings.Contains(all, ".swp") || strings.Contains(all, "sub.key") {
		t.Errorf("refused = %q: names that are not key files must be ignored", all)
	}
	if _, _, err := ReadPrivateDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("ReadPrivateDir(missing dir) succeeded")
	}
}
