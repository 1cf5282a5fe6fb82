package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tpcluster/tpcluster/internal/keyfile"
)

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "taken.pub"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		code    int
		kid     string // "" with code 0: the thumbprint
		message string
	}{
		{"default kid is the thumbprint", []string{"--out", filepath.Join(dir, "a")}, 0, "", "kid "},
		{"explicit kid", []string{"--out", filepath.Join(dir, "b"), "--kid", "bundle-2026"}, 0, "bundle-2026", "kid bundle-2026"},
		{"refuses to overwrite", []string{"--out", filepath.Join(dir, "a")}, 1, "", "file already exists"},
		{"refuses an existing .pub", []string{"--out", filepath.Join(dir, "taken")}, 1, "", "file already exists"},
		{"bad kid", []string{"--out", filepath.Join(dir, "c"), "--kid", "a\x01b"}, 1, "", "control character"},
		{"missing --out", nil, 2, "", "--out= (TPCLUSTER_OUT): required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := bp(t, append([]string{"keygen"}, tt.args...)...)
			if code != tt.code || !strings.Contains(out+errs, tt.message) {
				t.Fatalf("keygen %q = exit %d, want %d with %q\nstdout: %s\nstderr: %s", tt.args, code, tt.code, tt.message, out, errs)
			}
			if code != 0 {
				return
			}
			base := tt.args[1]
			for ext, mode := range map[string]os.FileMode{".key": 0o600, ".pub": 0o644} {
				fi, err := os.Stat(base + ext)
				if err != nil || fi.Mode().Perm() != mode {
					t.Errorf("%s%s: %v, mode %v; want %04o", base, ext, err, fi.Mode().Perm(), mode)
				}
			}
			pub, err := keyfile.ReadPublic(base + ".pub")
			if err != nil {
				t.Fatal(err)
			}
			priv, err := keyfile.ReadPrivate(base + ".key")
			if err != nil {
				t.Fatal(err)
			}
			want := tt.kid
			if want == "" {
				want = keyfile.Thumbprint(pub.Key)
			}
			if pub.KID != want || priv.KID() != want || !strings.Contains(out, "kid "+want) {
				t.Errorf("kid = %q / %q, printed %q; want %q", pub.KID, priv.KID(), out, want)
			}
		})
	}
}
