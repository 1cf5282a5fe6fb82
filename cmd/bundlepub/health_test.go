package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testport"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// TestPublishHealth runs publish with beacons and --health-listen on a real
// NATS server: /readyz and /healthz answer 200 while beacons flow; with
// NATS gone /readyz turns 503 (beacons are not reaching the bucket) while
// /healthz stays 200 (the loop runs: a restart would not bring NATS back);
// cancelling stops the listener.
func TestPublishHealth(t *testing.T) {
	w := newWorld(t)
	mustBP(t, "keygen", "--out", filepath.Join(w.dir, "beacon"), "--kid", "beacon-1")
	srv := natstest.Server(t)
	addr := testport.Addrs(t, 1)[0]

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var code int
	var out, errb bytes.Buffer
	wg.Go(func() {
		code = run(ctx, []string{"publish", "--nats-url", srv.ClientURL(),
			"--trust-material", w.signedTrust, "--policy-bundle", w.signedPolicy, "--bundle-public-key", w.bundlePub,
			"--beacon-key", filepath.Join(w.dir, "beacon.key"), "--beacon-interval", "200ms", "--timeout", "500ms",
			"--health-listen", addr}, &out, &errb)
	})
	defer func() {
		cancel()
		wg.Wait()
		if t.Failed() {
			t.Logf("publish exit %d\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
		}
	}()

	c := &http.Client{Timeout: 2 * time.Second}
	status := func(path string) (int, string) {
		resp, err := c.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	want := func(path string, code int) func() error {
		return func() error {
			if got, body := status(path); got != code {
				return fmt.Errorf("%s = %d %s, want %d", path, got, body, code)
			}
			return nil
		}
	}
	took := testwait.Until(t, 30*time.Second, "ready while beacons flow", func() error {
		if err := want("/readyz", 200)(); err != nil {
			return err
		}
		return want("/healthz", 200)()
	})
	t.Logf("ready %v after start", took)

	srv.Shutdown()
	srv.WaitForShutdown()
	took = testwait.Until(t, 30*time.Second, "/readyz 503 with NATS gone", want("/readyz", 503))
	t.Logf("/readyz 503 %v after NATS stopped (window 3 x 200ms + 500ms)", took)
	// The loop keeps trying: liveness holds over several windows.
	for range 5 {
		if err := want("/healthz", 200)(); err != nil {
			t.Error(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if got, _ := status("/nope"); got != 404 {
		t.Errorf("/nope = %d, want 404", got)
	}

	cancel()
	wg.Wait()
	if code != 0 {
		t.Errorf("publish exit %d after cancel, want 0", code)
	}
	if got, _ := status("/healthz"); got != 0 {
		t.Errorf("/healthz answered %d after publish returned", got)
	}
}
