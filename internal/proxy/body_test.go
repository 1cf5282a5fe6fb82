package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/reason"
)

// denyAll is a Decider for tests that only read bodies.
type denyAll struct{}

func (denyAll) Decide(context.Context, *core.Request) core.Decision {
	return core.Decision{Reason: reason.PassportMissing, Status: reason.PassportMissing.HTTPStatus()}
}

// signalReader reports each Read call before it blocks on the pipe.
type signalReader struct {
	r     io.Reader
	reads chan struct{}
}

func (s *signalReader) Read(p []byte) (int, error) {
	s.reads <- struct{}{}
	return s.r.Read(p)
}

// TestBodyGrowsAsBytesArrive: an announced length costs nothing until its
// bytes come; then the buffer (and the account) is at most twice what was
// received, or 4 KiB; everything is released by done.
func TestBodyGrowsAsBytesArrive(t *testing.T) {
	h, err := New(Config{Decider: denyAll{}, MaxBodyBytes: 1 << 20, MaxBodyMemoryBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	src := &signalReader{r: pr, reads: make(chan struct{}, 1<<16)}
	req := httptest.NewRequest("POST", "/v1/orders", src)
	req.ContentLength = 1 << 20 // announced, never sent in full
	type result struct {
		b   *body
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := h.readBody(httptest.NewRecorder(), req)
		done <- result{b, err}
	}()
	<-src.reads // blocked waiting for the first byte
	if used := h.mem.used.Load(); used != 0 {
		t.Errorf("body memory with 1 MiB announced and nothing sent = %d, want 0", used)
	}
	sent := 0
	for _, n := range []int{1, 100, 4000, 5000, 20000} {
		if _, err := pw.Write([]byte(strings.Repeat("x", n))); err != nil {
			t.Fatal(err)
		}
		sent += n
		// Write returns once the reader has every byte; the growth for the
		// last one may still be under way.
		deadline := time.Now().Add(10 * time.Second)
		for h.mem.used.Load() < int64(sent) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		used := h.mem.used.Load()
		if used > int64(max(2*sent, bodyChunk)) || used < int64(sent) {
			t.Errorf("after %d bytes: body memory %d, want between %d and %d", sent, used, sent, max(2*sent, bodyChunk))
		}
		t.Logf("received %d bytes: body memory %d", sent, used)
	}
	pw.CloseWithError(io.ErrUnexpectedEOF)
	res := <-done
	if res.err == nil {
		t.Error("a body cut short read without error")
	}
	res.b.done()
	if used := h.mem.used.Load(); used != 0 {
		t.Errorf("body memory after done = %d, want 0", used)
	}
}

func vmRSS(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// TestBodyMemoryBounded: many connections that announce large bodies and
// send them slowly never take more than --max-body-memory-bytes; those
// that find no room get 503 verifier_overloaded with the §6 body; idle
// connections that sent only their head hold nothing; everything is
// released when the connections go.
func TestBodyMemoryBounded(t *testing.T) {
	const (
		limit   = 256 << 10
		perConn = 8 << 10 // bytes each slow connection sends before stalling
		slow    = 48      // limit/perConn = 32 fit
		idle    = 200
	)
	r := newRig(t, func(c *Config) { c.MaxBodyBytes = 64 << 10; c.MaxBodyMemoryBytes = limit })
	addr := strings.TrimPrefix(r.srv.URL, "http://")
	t.Logf("VmRSS before: %s", vmRSS(t))
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
	// Idle heads: the 62-byte head of the attack, 64 KiB announced.
	for range idle {
		c := dial()
		fmt.Fprintf(c, "POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 64<<10)
	}
	var (
		mu       sync.Mutex
		refused  int
		bodies   []string
		peakUsed int64
	)
	var wg sync.WaitGroup
	for range slow {
		c := dial()
		fmt.Fprintf(c, "POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", 64<<10, strings.Repeat("x", perConn))
		wg.Go(func() {
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return // closed at cleanup while still held
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			if resp.StatusCode == 503 && resp.Header.Get("Retry-After") != "" {
				refused++
			}
			bodies = append(bodies, fmt.Sprintf("%d %s", resp.StatusCode, b))
		})
	}
	// Every slow connection either holds perConn bytes or was refused.
	deadline := time.Now().Add(60 * time.Second)
	start := time.Now()
	for {
		used := r.h.mem.used.Load()
		mu.Lock()
		peakUsed = max(peakUsed, used)
		n := refused + int(used/perConn)
		mu.Unlock()
		if used > limit {
			t.Fatalf("body memory %d above the limit %d", used, limit)
		}
		if n == slow && used%perConn == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: %d refused, body memory %d", refused, used)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("settled after %v: %d of %d slow connections refused, body memory %d (peak seen %d), %d idle heads; VmRSS %s",
		time.Since(start), refused, slow, r.h.mem.used.Load(), peakUsed, idle, vmRSS(t))
	if g := bodyMemoryGauge(t, r); g != r.h.mem.used.Load() {
		t.Errorf("tpcluster.request_body.memory = %d, account %d", g, r.h.mem.used.Load())
	}
	mu.Lock()
	if refused < slow-limit/perConn {
		t.Errorf("%d refused, want at least %d: idle heads or slow bodies held more than they received", refused, slow-limit/perConn)
	}
	for _, b := range bodies {
		if !strings.HasPrefix(b, `503 {"allowed":false,"reason":"verifier_overloaded","request_id":"`) {
			t.Errorf("answer %s, want 503 verifier_overloaded", b)
		}
	}
	mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	for r.h.mem.used.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("body memory %d after every connection closed", r.h.mem.used.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The node serves again.
	ok := r.sign(t, "POST", r.srv.URL, "/v1/orders", "orders.create", []byte(`{"a":1}`))
	if resp, text := do(t, ok); resp.StatusCode != 200 {
		t.Errorf("POST after the flood = %d %s", resp.StatusCode, text)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	overloaded := 0
	for _, rec := range r.recs {
		if rec.Decision.Reason == "verifier_overloaded" {
			overloaded++
		}
	}
	if overloaded != refused {
		t.Errorf("%d verifier_overloaded records for %d refusals", overloaded, refused)
	}
}

// bodyMemoryGauge reads tpcluster.request_body.memory from the rig's reader.
func bodyMemoryGauge(t *testing.T, r *rig) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.metrics.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "tpcluster.request_body.memory" {
				if g, ok := m.Data.(metricdata.Gauge[int64]); ok && len(g.DataPoints) == 1 {
					return g.DataPoints[0].Value
				}
			}
		}
	}
	t.Fatal("no tpcluster.request_body.memory gauge")
	return 0
}
