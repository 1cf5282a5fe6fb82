package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/testwait"
)

// processRSS returns a process's VmRSS in bytes, from /proc.
func processRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// bodyMemoryMetric reads tpcluster_request_body_memory_bytes from the
// node's /_tp/metrics.
func bodyMemoryMetric(n *node) (int64, error) {
	resp, err := http.Get(n.URL + "/_tp/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(l, "tpcluster_request_body_memory_bytes") {
			f := strings.Fields(l)
			v, err := strconv.ParseFloat(f[len(f)-1], 64) // the exposition writes 1.6777216e+07
			return int64(v), err
		}
	}
	return 0, fmt.Errorf("no tpcluster_request_body_memory_bytes in /_tp/metrics")
}

// TestBodyMemoryFlood replays the finding against the real binary: 400
// connections each send a head announcing a 1 MiB body and nothing more
// (before the fix the buffer was grown to the announced length: 38 MB to
// 450 MB), and 400 more send 64 KiB of their 1 MiB and stall. The node's
// body memory never passes --max-body-memory-bytes, the connections that
// find no room get 503 verifier_overloaded, and the process's RSS stays
// far below what the announced lengths would cost.
func TestBodyMemoryFlood(t *testing.T) {
	const (
		limit   = 16 << 20
		heads   = 400
		slow    = 400
		perConn = 64 << 10 // what each slow connection sends before stalling
	)
	w := newWorld(t)
	up := newUpstream(t)
	n := startVerifierd(t, w, true, "--upstream", up.URL, "--max-body-memory-bytes", strconv.Itoa(limit), "--read-timeout", "5m")
	addr := strings.TrimPrefix(n.URL, "http://")
	pid := n.cmd.Process.Pid
	before := processRSS(t, pid)

	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		return c
	}
	head := "POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"
	for range heads {
		if _, err := io.WriteString(dial(), head); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu      sync.Mutex
		refused int
		other   []string
	)
	var wg sync.WaitGroup
	chunk := strings.Repeat("x", perConn)
	for range slow {
		c := dial()
		if _, err := io.WriteString(c, head+chunk); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return // closed at the end while still held
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			if resp.StatusCode == 503 && strings.Contains(string(b), `"reason":"verifier_overloaded"`) {
				refused++
			} else {
				other = append(other, fmt.Sprintf("%d %s", resp.StatusCode, b))
			}
		})
	}
	// Settled: every slow connection holds its 64 KiB or was refused.
	var held int64
	took := testwait.Until(t, 3*time.Minute, "every slow body held or refused", func() error {
		var err error
		if held, err = bodyMemoryMetric(n); err != nil {
			return err
		}
		if held > limit {
			t.Fatalf("body memory %d above --max-body-memory-bytes %d", held, limit)
		}
		mu.Lock()
		defer mu.Unlock()
		if got := refused + len(other) + int(held/perConn); got != slow || held%perConn != 0 {
			return fmt.Errorf("%d refused, %d held (%d bytes) of %d", refused, held/perConn, held, slow)
		}
		return nil
	})
	after := processRSS(t, pid)
	mu.Lock()
	t.Logf("settled after %s: %d heads idle, %d of %d slow bodies held (%d bytes), %d refused; verifierd VmRSS %d MiB -> %d MiB",
		took.Round(time.Millisecond), heads, held/perConn, slow, held, refused, before>>20, after>>20)
	if len(other) > 0 {
		t.Errorf("answers other than 503 verifier_overloaded: %q", other)
	}
	if refused < slow-limit/perConn {
		t.Errorf("%d refused, want at least %d", refused, slow-limit/perConn)
	}
	mu.Unlock()
	// Generous: the announced lengths alone would be 800 MiB; before the
	// fix the heads alone took 412 MB.
	if grew := after - before; grew > 192<<20 {
		t.Errorf("verifierd RSS grew by %d MiB", grew>>20)
	}
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	testwait.Until(t, time.Minute, "body memory released", func() error {
		if v, err := bodyMemoryMetric(n); err != nil || v != 0 {
			return fmt.Errorf("body memory %d (%v)", v, err)
		}
		return nil
	})
	if a := send(t, http.DefaultClient, w.signed(t, "POST", n.URL+"/v1/orders", "orders.create", []byte(`{"a":1}`))); a.status != 200 {
		t.Errorf("POST after the flood = %d %s", a.status, a.body)
	}
}
