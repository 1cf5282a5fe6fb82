package keyfile

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// RFC 8037 appendix A.1 and A.3.
const (
	rfcSeed       = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
	rfcX          = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
	rfcThumbprint = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
)

func TestThumbprintRFC8037(t *testing.T) {
	x, err := base64.RawURLEncoding.DecodeString(rfcX)
	if err != nil {
		t.Fatal(err)
	}
	if got := Thumbprint(x); got != rfcThumbprint {
		t.Errorf("Thumbprint(RFC 8037 A.3 key) = %q, want %q", got, rfcThumbprint)
	}
}

func TestFromSeedDefaultKID(t *testing.T) {
	seed, _ := base64.RawURLEncoding.DecodeString(rfcSeed)
	k, err := FromSeed(seed, "")
	if err != nil {
		t.Fatal(err)
	}
	if k.KID() != rfcThumbprint {
		t.Errorf("KID() = %q, want thumbprint %q", k.KID(), rfcThumbprint)
	}
	if got := base64.RawURLEncoding.EncodeToString(k.Public().Key); got != rfcX {
		t.Errorf("public key = %q, want %q", got, rfcX)
	}
}

func TestWriteRead(t *testing.T) {
	base := filepath.Join(t.TempDir(), "bundle")
	k, err := Generate("")
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Write(base); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{".key": 0o600, ".pub": 0o644} {
		fi, err := os.Stat(base + name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode = %04o, want %04o", name, fi.Mode().Perm(), want)
		}
	}
	priv, err := ReadPrivate(base + ".key")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ReadPublic(base + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if priv.KID() != k.KID() || pub.KID != k.KID() || pub.KID != Thumbprint(pub.Key) {
		t.Errorf("kids: priv %q pub %q want %q", priv.KID(), pub.KID, k.KID())
	}
	msg := []byte("message")
	if !ed25519.Verify(pub.Key, msg, priv.Sign(msg)) {
		t.Error("signature by read private key does not verify with read public key")
	}
	if err := k.Write(base); !errors.Is(err, os.ErrExist) {
		t.Errorf("second Write = %v, want os.ErrExist", err)
	}
	if _, err := ReadPublic(base + ".key"); err == nil || !strings.Contains(err.Error(), "this is a private key") {
		t.Errorf("ReadPublic(.key) = %v, want \"this is a private key\"", err)
	}
	// A .pub given where a private key belongs is named as such, not met
	// with "chmod 600" (a .pub is 0644 by design).
	if _, err := ReadPrivate(base + ".pub"); err == nil || !strings.Contains(err.Error(), "this is a public key") || strings.Contains(err.Error(), "chmod") {
		t.Errorf("ReadPrivate(.pub) = %v, want \"this is a public key\"", err)
	}
}

func TestWriteRefusesExistingPub(t *testing.T) {
	base := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(base+".pub", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	k, _ := Generate("kid-1")
	if err := k.Write(base); !errors.Is(err, os.ErrExist) {
		t.Errorf("Write with existing .pub = %v, want os.ErrExist", err)
	}
	if _, err := os.Stat(base + ".key"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf(".key was left behind: %v", err)
	}
}

func TestReadPrivateRefusesLooseMode(t *testing.T) {
	base := filepath.Join(t.TempDir(), "k")
	k, _ := Generate("kid-1")
	if err := k.Write(base); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644, 0o620, 0o660} {
		if err := os.Chmod(base+".key", mode); err != nil {
			t.Fatal(err)
		}
		_, err := ReadPrivate(base + ".key")
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("mode %04o", mode)) {
			t.Errorf("ReadPrivate(mode %04o) = %v, want refusal naming the mode", mode, err)
		}
	}
	if err := os.Chmod(base+".key", 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPrivate(base + ".key"); err != nil {
		t.Errorf("ReadPrivate(mode 0400) = %v, want ok", err)
	}
}

func TestParseStrict(t *testing.T) {
	seed, _ := base64.RawURLEncoding.DecodeString(rfcSeed)
	k, _ := FromSeed(seed, "kid-1")
	seedText := rfcSeed
	otherPub := base64.RawURLEncoding.EncodeToString(make([]byte, 32))
	good := `{"version":"trustplane-key-v1","kid":"kid-1","alg":"EdDSA","public_key_b64url":"` + rfcX + `"`
	tests := []struct {
		name, doc, want string
		private         bool
	}{
		{"ok pub", good + `}`, "", false},
		{"ok key", good + `,"private_key_seed_b64url":"` + seedText + `"}`, "", true},
		{"unknown member", good + `,"x":"y"}`, `unknown member "x"`, false},
		{"duplicate member", good + `,"kid":"kid-2"}`, `duplicate member "kid"`, false},
		{"missing kid", `{"version":"trustplane-key-v1","alg":"EdDSA","public_key_b64url":"` + rfcX + `"}`, `missing member "kid"`, false},
		{"empty kid", strings.Replace(good, `"kid-1"`, `""`, 1) + `}`, "kid is empty", false},
		{"bad version", strings.Replace(good, "trustplane-key-v1", "trustplane-key-v2", 1) + `}`, "version", false},
		{"bad alg", strings.Replace(good, "EdDSA", "ES256", 1) + `}`, "alg", false},
		{"padded", strings.Replace(good, rfcX, rfcX+"=", 1) + `}`, "not canonical", false},
		{"non-canonical bits", strings.Replace(good, rfcX, rfcX[:42]+"p", 1) + `}`, "not canonical", false},
		{"line break", strings.Replace(good, rfcX, rfcX[:10]+`\n`+rfcX[10:], 1) + `}`, "not canonical", false},
		{"short key", strings.Replace(good, rfcX, rfcX[:40], 1) + `}`, "holds 30 bytes", false},
		{"number member", strings.Replace(good, `"kid-1"`, `1`, 1) + `}`, "not a string", false},
		{"trailing data", good + `} {}`, "after the JSON object", false},
		{"not object", `[]`, "not a JSON object", false},
		{"seed mismatch", strings.Replace(good, rfcX, otherPub, 1) + `,"private_key_seed_b64url":"` + seedText + `"}`, "does not match", true},
		{"key missing seed", good + `}`, `missing member "private_key_seed_b64url"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.private {
				var m map[string]string
				if m, err = parseFile([]byte(tt.doc)); err == nil {
					var got *PrivateKey
					got, err = privateFromMembers(m)
					if err == nil && got.KID() != k.KID() {
						t.Errorf("kid = %q", got.KID())
					}
				}
			} else {
				_, err = ParsePublic([]byte(tt.doc))
			}
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("parse = %v, want ok", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("parse = %v, want error containing %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), seedText) {
				t.Errorf("error echoes the seed: %v", err)
			}
		})
	}
}

func TestPrivateKeyRedacted(t *testing.T) {
	seed, _ := base64.RawURLEncoding.DecodeString(rfcSeed)
	k, _ := FromSeed(seed, "kid-1")
	seedHex := fmt.Sprintf("%x", seed)
	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		outputs = append(outputs, fmt.Sprintf(verb, k), fmt.Sprintf(verb, *k))
	}
	js, _ := json.Marshal(struct{ K *PrivateKey }{k})
	outputs = append(outputs, k.String(), k.GoString(), string(js))
	for _, out := range outputs {
		if strings.Contains(out, rfcSeed) || strings.Contains(out, seedHex) || strings.Contains(out, fmt.Sprint([]byte(seed))) {
			t.Errorf("output leaks the seed: %s", out)
		}
		if !strings.Contains(out, "REDACTED") && !strings.Contains(out, "kid-1") {
			t.Errorf("output is not the redacted form: %s", out)
		}
	}
}

// TestPrivateKeyRedactedInSlog checks what slog's handlers print for a
// PrivateKey: the package does not import slog (no LogValue), so this is
// what keeps STYLE §7's promise.
func TestPrivateKeyRedactedInSlog(t *testing.T) {
	seed, _ := base64.RawURLEncoding.DecodeString(rfcSeed)
	k, _ := FromSeed(seed, "kid-1")
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("m", "key", k, "deref", *k)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("m", "key", k)
	if strings.Contains(buf.String(), rfcSeed) || strings.Contains(buf.String(), fmt.Sprintf("%x", seed)) || !strings.Contains(buf.String(), "REDACTED") {
		t.Errorf("slog output leaks or is not redacted:\n%s", buf.String())
	}
}
