package natstest

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// LatencyProxy is a TCP proxy on 127.0.0.1 that delays every byte it
// carries, in both directions, by a fixed one-way delay: a WAN link between
// two regions on one machine. It keeps byte order and adds no bandwidth
// limit. (toxiproxy does this and much more; one latency toxic does not earn
// its HTTP API, metrics and logging stack as a dependency.)
type LatencyProxy struct {
	ln     net.Listener
	target string
	delay  time.Duration

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // guarded by mu
	closed bool                  // guarded by mu
	wg     sync.WaitGroup
}

// NewLatencyProxy listens on an OS-chosen loopback port and forwards each
// connection to target, delaying both directions by delay. It is closed
// when the test ends.
func NewLatencyProxy(t testing.TB, target string, delay time.Duration) *LatencyProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("natstest: latency proxy: %v", err)
	}
	p := &LatencyProxy{ln: ln, target: target, delay: delay, conns: make(map[net.Conn]struct{})}
	p.wg.Go(p.accept)
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *LatencyProxy) Addr() string { return p.ln.Addr().String() }

// Close stops accepting, cuts every connection and waits for its
// goroutines.
func (p *LatencyProxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *LatencyProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *LatencyProxy) accept() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			in.Close()
			continue
		}
		if !p.track(in) || !p.track(out) {
			in.Close()
			out.Close()
			continue
		}
		p.wg.Go(func() { p.pump(in, out) })
		p.wg.Go(func() { p.pump(out, in) })
	}
}

// pump copies src to dst, each chunk written delay after it was read.
func (p *LatencyProxy) pump(src, dst net.Conn) {
	type chunk struct {
		b   []byte
		due time.Time
	}
	ch := make(chan chunk, 1024)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(ch)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{buf[:n], time.Now().Add(p.delay)}
			}
			if err != nil {
				return
			}
		}
	})
	for c := range ch {
		time.Sleep(time.Until(c.due))
		if _, err := dst.Write(c.b); err != nil {
			src.Close() // unblocks the reader
			break
		}
	}
	for range ch { // drain if the writer stopped early
	}
	wg.Wait()
	// Half-close so the peer sees EOF in order; a full close follows from
	// the other direction.
	if tc, ok := dst.(*net.TCPConn); ok {
		if err := tc.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
			dst.Close()
		}
	} else {
		dst.Close()
	}
}
