package e2e

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSlowAndHugeClients: a client that never finishes its headers or its
// body is cut off by the server timeouts, and a huge header block is
// refused, so neither can pin a node. The test records the times it saw.
func TestSlowAndHugeClients(t *testing.T) {
	w := newWorld(t)
	up := newUpstream(t)
	n := startVerifierd(t, w, true, "--upstream", up.URL,
		"--read-header-timeout", "1s", "--read-timeout", "2s", "--max-header-bytes", "8192")
	addr := strings.TrimPrefix(n.URL, "http://")

	closedAfter := func(t *testing.T, partial string) time.Duration {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, partial); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second)) // generous: the node must act first
		_, err = io.Copy(io.Discard, c)
		took := time.Since(start)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("connection still open after %s", took)
		}
		return took
	}

	t.Run("slow headers", func(t *testing.T) {
		took := closedAfter(t, "GET /v1/orders/1 HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		t.Logf("slow-header client cut off after %s (--read-header-timeout 1s)", took.Round(time.Millisecond))
	})
	t.Run("slow body", func(t *testing.T) {
		took := closedAfter(t, "POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
		t.Logf("slow-body client answered or cut off after %s (--read-timeout 2s)", took.Round(time.Millisecond))
	})
	t.Run("huge header", func(t *testing.T) {
		req, _ := http.NewRequest("GET", n.URL+"/v1/orders/1", nil)
		req.Header.Set("X-Huge", strings.Repeat("a", 64<<10))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("64 KiB header = %d, want 431", resp.StatusCode)
		}
	})
	// The node still serves after all that.
	if a := send(t, http.DefaultClient, w.signed(t, "GET", n.URL+"/v1/orders/after", "orders.get", nil)); a.status != 200 {
		t.Errorf("after the slow clients = %d %s", a.status, a.body)
	}
}
