package main

import (
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestDispatch(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		output string // in stdout or stderr
	}{
		{"no subcommand", nil, 2, "Subcommands:"},
		{"help", []string{"-h"}, 0, "merge-source"},
		{"unknown", []string{"frobnicate"}, 2, `unknown subcommand "frobnicate"`},
		{"subcommand help", []string{"sign", "-h"}, 0, "--sequence"},
		{"bad flag", []string{"sign", "--nope"}, 2, "flag provided but not defined"},
		{"stray argument", []string{"keygen", "--out", "x", "extra"}, 2, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := bp(t, tt.args...)
			if code != tt.code || !strings.Contains(out+errs, tt.output) {
				t.Errorf("bundlepub %q = exit %d, want %d with %q\nstdout: %s\nstderr: %s", tt.args, code, tt.code, tt.output, out, errs)
			}
		})
	}
	for _, c := range commands() {
		code, out, _ := bp(t, "-h")
		if code != 0 || !strings.Contains(out, "  "+c.name+" ") {
			t.Errorf("bundlepub -h does not list %s", c.name)
		}
	}
}

func TestExitStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code int
		want string
	}{
		{"success", nil, 0, ""},
		{"help", flag.ErrHelp, 0, ""},
		{"runtime", errors.New("boom"), 1, "bundlepub x: boom\n"},
		{"names itself", errors.New("bundlepub x: not built yet"), 1, "bundlepub x: not built yet\n"},
		{"usage", &usageError{errors.Join(errors.New("a"), errors.New("b"))}, 2, "bundlepub x: invalid configuration:\n  a\n  b\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if code := exitStatus("x", tt.err, &b); code != tt.code || b.String() != tt.want {
				t.Errorf("exitStatus(%v) = %d, %q; want %d, %q", tt.err, code, b.String(), tt.code, tt.want)
			}
		})
	}
}

// TestInvalidConfigListsEveryProblem: STYLE §4, every problem named with its
// flag, variable and value, exit 2 before anything runs.
func TestInvalidConfigListsEveryProblem(t *testing.T) {
	code, _, errs := bp(t, "sign", "--sequence", "-1", "--issued-at", "yesterday")
	if code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	for _, want := range []string{
		"bundlepub sign: invalid configuration:",
		"--key= (TPCLUSTER_KEY): required",
		"--in= (TPCLUSTER_IN): required",
		"--out= (TPCLUSTER_OUT): required",
		"--sequence=-1 (TPCLUSTER_SEQUENCE): must be 0 to 2^53-1",
		`--issued-at=yesterday (TPCLUSTER_ISSUED_AT): want "now" or an RFC 3339 time`,
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}

func TestFlagsFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TPCLUSTER_OUT", filepath.Join(dir, "envkey"))
	t.Setenv("TPCLUSTER_KID", "from-env")
	out := mustBP(t, "keygen")
	if !strings.Contains(out, "kid from-env") {
		t.Errorf("keygen output %q, want kid from TPCLUSTER_KID", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "envkey.pub")); err != nil {
		t.Errorf("TPCLUSTER_OUT not used: %v", err)
	}
	// An explicit flag beats the environment.
	mustBP(t, "keygen", "--out", filepath.Join(dir, "flagkey"))
	if _, err := os.Stat(filepath.Join(dir, "flagkey.key")); err != nil {
		t.Errorf("--out not used: %v", err)
	}
}

// TestBinaryExitCodes runs the real binary once per status.
func TestBinaryExitCodes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "bundlepub")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	w := newWorld(t)
	tampered := w.path("tampered.json")
	data, err := os.ReadFile(w.signedPolicy)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tampered, []byte(strings.Replace(string(data), "/v1/orders", "/v1/orderz", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  []string
		code int
	}{
		{"help", []string{"-h"}, nil, 0},
		{"verify ok", []string{"verify", "--bundle-public-key", w.bundlePub, w.signedPolicy, w.signedTrust}, nil, 0},
		{"verify ok from env", []string{"verify", w.signedPolicy}, []string{"TPCLUSTER_BUNDLE_PUBLIC_KEY=" + w.bundlePub}, 0},
		{"verify tampered", []string{"verify", "--bundle-public-key", w.bundlePub, w.signedPolicy, tampered}, nil, 1},
		{"verify without key", []string{"verify", w.signedPolicy}, nil, 2},
		{"remove without confirm", []string{"remove-source", "--policy", w.policy, "--trust", w.trust, "--issuer", "i", "--kid", "k",
			"--out-policy", w.path("p"), "--out-trust", w.path("t")}, nil, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), bin, tt.args...)
			cmd.Env = append(os.Environ(), tt.env...)
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := errors.AsType[*exec.ExitError](err); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code {
				t.Errorf("bundlepub %q: exit %d, want %d\n%s", tt.args, code, tt.code, out)
			}
		})
	}
}
