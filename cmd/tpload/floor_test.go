package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestFloorValidate: tpload nats-floor reports every problem at once, each
// naming its flag, before it connects to anything.
func TestFloorValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"everything wrong", []string{
			"--mode", "open", "--nodes", "0", "--workers", "0", "--requests", "0", "--duration", "0s",
			"--audit-window", "0", "--audit-linger", "-1ms", "--pid-nats", "x", "--nats-monitor", "http://10.0.0.1:8222",
		}, []string{
			"--nats-url=", "--nodes=0", "--rate=0 (TPCLUSTER_RATE): must be positive in open mode", "--workers=0",
			"--requests=0", "--duration=0s", "--audit-window=0", "--audit-linger=-1ms", `--pid-nats=x: "x" is not a process id`,
			"--nats-monitor=http://10.0.0.1:8222", "not a loopback address",
		}},
		{"rate in closed mode", []string{"--nats-url", "nats://127.0.0.1:4222", "--rate", "10"}, []string{"--rate=10 (TPCLUSTER_RATE): only for --mode=open"}},
		{"like-connections without monitors", []string{"--nats-url", "nats://127.0.0.1:4222", "--like-connections", "verifierd"},
			[]string{"--like-connections=verifierd (TPCLUSTER_LIKE_CONNECTIONS): needs --nats-monitor"}},
		{"unknown mode", []string{"--nats-url", "nats://127.0.0.1:4222", "--mode", "ceiling"}, []string{"--mode=ceiling (TPCLUSTER_MODE): want closed or open"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := run(t.Context(), append([]string{"nats-floor"}, tc.args...), &bytes.Buffer{}, &stderr)
			if !errors.Is(err, errUsage) {
				t.Fatalf("run = %v, want errUsage\n%s", err, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}
