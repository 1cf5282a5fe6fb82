package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tpcluster/tpcluster/internal/testport"
)

// TestValidate: every problem is reported at once, each naming its flag.
func TestValidate(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{
		"--mode", "open", "--target", "http://10.1.2.3:80", "--requests", "0", "--duration", "0s",
		"--replay-share", "0.7", "--tamper-share", "0.5", "--pid-verifier", "abc", "--distinct", "5",
	}, &bytes.Buffer{}, &stderr)
	if !errors.Is(err, errUsage) {
		t.Fatalf("run = %v, want errUsage", err)
	}
	for _, want := range []string{
		"--world or --prepare", "--rate=0 (TPCLUSTER_RATE): must be positive in open mode",
		`--target=http://10.1.2.3:80 (TPCLUSTER_TARGET): target "http://10.1.2.3:80": 10.1.2.3 is not a loopback address`,
		"--requests=0", "--duration=0s", "--pid-verifier=abc", "--distinct=5", "add up to 1.2",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
}

// TestPrepareOnly: --prepare with no target writes a world and stops.
func TestPrepareOnly(t *testing.T) {
	dir := t.TempDir()
	var stderr bytes.Buffer
	if err := run(t.Context(), []string{"--prepare", dir}, &bytes.Buffer{}, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "--bundle-public-key "+dir+"/bundle.pub") {
		t.Errorf("stderr = %q, want the verifierd flags", stderr.String())
	}
}

// TestTransportErrorsFail: a run in which no request got an answer prints
// its report and still fails, naming how many sends failed and why, so a
// script never reads a dead target's throughput as a measurement.
func TestTransportErrorsFail(t *testing.T) {
	closed := testport.Addrs(t, 1)[0]
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"--prepare", t.TempDir(), "--target", "http://" + closed, "--requests", "5",
		"--timeout", "2s", "--no-progress"}, &stdout, &stderr)
	if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), "5 of 5 sends failed (transport 5") {
		t.Errorf("run against a closed port = %v, want 5 of 5 sends failed by transport\n%s", err, stdout.String())
	}
	if !strings.Contains(stdout.String(), "errors") {
		t.Errorf("no report printed:\n%s", stdout.String())
	}
}
