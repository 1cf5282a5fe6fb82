package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchArguments checks loadtest/bench.sh's argument handling, which
// runs before it builds or starts anything: a bad value exits 2 naming the
// flag and its variable, and a results directory already holding a run is
// refused, since the summary and these charts read every report in it.
func TestBenchArguments(t *testing.T) {
	script, err := filepath.Abs("../bench.sh")
	if err != nil {
		t.Fatal(err)
	}
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "r1-open.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		env      []string
		wantCode int
		want     string
	}{
		{"help", []string{"-h"}, nil, 0, "--base-port N"},
		{"privileged port", []string{"--base-port", "80"}, nil, 2, "--base-port=80 (BENCH_BASE_PORT)"},
		{"port from env", nil, []string{"BENCH_BASE_PORT=abc"}, 2, "--base-port=abc (BENCH_BASE_PORT)"},
		{"unknown scenario", []string{"--scenarios", "r1,r2"}, nil, 2, `unknown scenario "r2"`},
		{"floor without r3", []string{"--scenarios", "ceiling,floor"}, nil, 2, "floor needs r3 in the same run"},
		{"floor without r3, from env", nil, []string{"BENCH_SCENARIOS=floor"}, 2, "floor needs r3 in the same run"},
		{"unknown argument", []string{"--bogus"}, nil, 2, `unknown argument "--bogus"`},
		{"missing value", []string{"--out"}, nil, 2, "--out needs a directory"},
		{"results not empty", []string{"--out", full}, nil, 2, "exists and is not empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), "bash", append([]string{script}, tc.args...)...)
			// GO=false: should a check ever let a case through, the build
			// fails at once (exit 1) instead of starting a whole bench.
			cmd.Env = append(append(os.Environ(), "GO=false"), tc.env...)
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := errors.AsType[*exec.ExitError](err); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode || !strings.Contains(string(out), tc.want) {
				t.Fatalf("bench.sh %q = exit %d, output:\n%s\nwant exit %d and %q", tc.args, code, out, tc.wantCode, tc.want)
			}
		})
	}
}
