package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSignVerifyRoundTrip(t *testing.T) {
	w := newWorld(t)
	for _, tt := range []struct {
		name, in, kind string
	}{{"policy", w.policy, "policy bundle"}, {"trust", w.trust, "trust material"}} {
		t.Run(tt.name, func(t *testing.T) {
			out := w.path(tt.name + ".v2.json")
			printed := mustBP(t, "sign", "--key", w.bundleKey, "--in", tt.in, "--out", out,
				"--sequence", "9", "--issued-at", "2026-06-01T10:00:00+02:00", "--issuer", "local://test")
			data, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			for _, want := range []string{"signed " + tt.kind, "kid bundle-1", "sequence 9", "issued_at 2026-06-01T08:00:00Z", hex.EncodeToString(sum[:])} {
				if !strings.Contains(printed, want) {
					t.Errorf("sign printed %q, lacks %q", printed, want)
				}
			}
			v := mustBP(t, "verify", "--bundle-public-key", w.bundlePub, out)
			if !strings.Contains(v, tt.kind+", sequence 9, issued_at 2026-06-01T08:00:00Z, kid bundle-1, sha256 "+hex.EncodeToString(sum[:])+": OK") {
				t.Errorf("verify printed %q", v)
			}
			if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o644 {
				t.Errorf("signed file mode %04o, want 0644", fi.Mode().Perm())
			}
		})
	}
	// Without --sequence and --issued-at, both stay as built.
	p, tm := w.load(t, w.signedPolicy, w.signedTrust)
	if p.Sequence != 3 || tm.Sequence != 3 {
		t.Errorf("sequences %d, %d; want 3 (from build)", p.Sequence, tm.Sequence)
	}
	// Re-signing in place works (atomic rename over the input).
	mustBP(t, "sign", "--key", w.bundleKey, "--in", w.signedPolicy, "--out", w.signedPolicy, "--sequence", "4")
	mustBP(t, "verify", "--bundle-public-key", w.bundlePub, w.signedPolicy)
	if entries, _ := filepath.Glob(w.path(".*.tmp-*")); len(entries) != 0 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestVerifyFailures(t *testing.T) {
	w := newWorld(t)
	mustBP(t, "keygen", "--out", w.path("other"), "--kid", "bundle-1") // same kid, other key
	mustBP(t, "keygen", "--out", w.path("stranger"))
	data, err := os.ReadFile(w.signedTrust)
	if err != nil {
		t.Fatal(err)
	}
	tampered := w.path("tampered.json")
	if err := os.WriteFile(tampered, []byte(strings.Replace(string(data), `"sequence":3`, `"sequence":30`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		key   string
		files []string
		fail  string // the failing file's line must contain this
	}{
		{"tampered", w.bundlePub, []string{w.signedPolicy, tampered}, "signature does not verify"},
		{"unknown key", w.path("stranger.pub"), []string{w.signedPolicy}, "signing key not accepted"},
		{"wrong key with the right kid", w.path("other.pub"), []string{w.signedTrust}, "signature does not verify"},
		{"unsigned", w.bundlePub, []string{w.policy}, "document is unsigned"},
		{"missing file", w.bundlePub, []string{w.path("nope.json")}, "no such file"},
		{"not a document", w.bundlePub, []string{w.config}, "neither a policy bundle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := bp(t, append([]string{"verify", "--bundle-public-key", tt.key}, tt.files...)...)
			last := tt.files[len(tt.files)-1]
			if code != 1 || !strings.Contains(out, last+": FAIL: ") || !strings.Contains(out, tt.fail) {
				t.Errorf("verify = exit %d, want 1 with %q\nstdout: %s\nstderr: %s", code, tt.fail, out, errs)
			}
			if len(tt.files) == 2 && !strings.Contains(out, tt.files[0]+": policy bundle") {
				t.Errorf("the good file's line is missing:\n%s", out)
			}
			if !strings.Contains(errs, "files did not verify") {
				t.Errorf("stderr %q lacks the summary", errs)
			}
		})
	}
}

func TestSignRefusals(t *testing.T) {
	w := newWorld(t)
	loose := w.path("loose.key")
	data, err := os.ReadFile(w.bundleKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(loose, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	pubAsKey := w.path("pub-as.key")
	if data, err = os.ReadFile(w.bundlePub); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubAsKey, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out := w.path("out.json")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"world-readable key", []string{"--key", loose, "--in", w.policy, "--out", out}, 1, "mode 0644"},
		{"public key as key", []string{"--key", pubAsKey, "--in", w.policy, "--out", out}, 1, `this is a public key`},
		{"lower sequence", []string{"--key", w.bundleKey, "--in", w.policy, "--out", out, "--sequence", "2"}, 1, "below the document's sequence 3"},
		{"not a document", []string{"--key", w.bundleKey, "--in", w.config, "--out", out}, 1, "neither a policy bundle"},
		{"bad issued-at", []string{"--key", w.bundleKey, "--in", w.policy, "--out", out, "--issued-at", "2026-01-01"}, 2, "--issued-at=2026-01-01 (TPCLUSTER_ISSUED_AT)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, errs := bp(t, append([]string{"sign"}, tt.args...)...)
			if code != tt.code || !strings.Contains(errs, tt.want) {
				t.Errorf("sign = exit %d, want %d with %q\nstdout: %s\nstderr: %s", code, tt.code, tt.want, stdout, errs)
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("a refused sign wrote its output")
			}
		})
	}
}
