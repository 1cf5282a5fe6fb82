package proxy

import (
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// DefaultMaxBodyMemoryBytes is the default of --max-body-memory-bytes: the
// request body bytes one node buffers at once, across all requests.
const DefaultMaxBodyMemoryBytes = 64 << 20

// bodyChunk is the first buffer a body gets, once its first byte arrived.
const bodyChunk = 4 << 10

// bodyMemory accounts the capacity of every request body buffer a node
// holds. A request reserves before it grows its buffer, and gets
// verifier_overloaded when the reservation would pass the limit: announced
// lengths cost nothing until the bytes arrive, so many idle connections
// announcing large bodies cannot exhaust the node. Safe for concurrent use.
type bodyMemory struct {
	limit int64
	used  atomic.Int64
}

// reserve takes n bytes, or reports false and takes nothing.
func (m *bodyMemory) reserve(n int64) bool {
	for {
		u := m.used.Load()
		if u+n > m.limit {
			return false
		}
		if m.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (m *bodyMemory) release(n int64) {
	if n != 0 {
		m.used.Add(-n)
	}
}

// errBodyMemory reports that the node's body memory had no room.
var errBodyMemory = errors.New("request body memory (--max-body-memory-bytes) exhausted")

// body is a request body read by readBody. held bytes of body memory stay
// reserved until the handler calls done, after the body was forwarded.
type body struct {
	bytes    []byte
	tooLarge bool // more than MaxBodyBytes: request_body_too_large at step 17
	mem      *bodyMemory
	held     int64
}

func (b *body) done() {
	b.mem.release(b.held)
	b.held = 0
}

// readBody reads the body up to MaxBodyBytes within the body read timeout.
// The buffer grows only once it is full and another byte has arrived, to
// twice its size (at least bodyChunk, at most the announced length or the
// limit): it never holds more than twice what was received, or bodyChunk,
// and nothing before the first byte. Every growth is reserved in the
// node's body memory first. It returns
// errBodyMemory when that has no room, and another error when the client
// stalled or went away. The caller must call done on the result, whatever
// the error.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) (*body, error) {
	b := &body{mem: h.mem}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return b, nil
	}
	// MaxBytesReader bounds size, not time.
	if h.cfg.BodyReadTimeout > 0 {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.cfg.BodyReadTimeout))
	}
	if r.ContentLength > h.cfg.MaxBodyBytes {
		b.tooLarge = true
		return b, nil
	}
	maxCap := h.cfg.MaxBodyBytes
	if r.ContentLength > 0 {
		maxCap = r.ContentLength
	}
	src := http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes)
	var buf []byte
	var probe [1]byte
	for {
		if len(buf) == cap(buf) {
			// Full (or nothing yet): wait for one more byte before growing,
			// so a connection that announced a length and sent nothing
			// holds nothing.
			n, err := src.Read(probe[:])
			if n > 0 {
				if int64(len(buf)) >= maxCap {
					b.tooLarge = true
					return b, nil
				}
				next := min(max(2*int64(cap(buf)), bodyChunk), maxCap)
				grow := next - int64(cap(buf))
				if !h.mem.reserve(grow) {
					return b, errBodyMemory
				}
				b.held += grow
				nb := make([]byte, len(buf), next)
				copy(nb, buf)
				buf = append(nb, probe[0])
			}
			switch {
			case err == io.EOF:
				b.bytes = buf
				return b, nil
			case isMaxBytes(err):
				b.tooLarge = true
				return b, nil
			case err != nil:
				return b, err
			}
			continue
		}
		n, err := src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case err == io.EOF:
			b.bytes = buf
			return b, nil
		case isMaxBytes(err):
			b.tooLarge = true
			return b, nil
		case err != nil:
			return b, err
		}
	}
}

func isMaxBytes(err error) bool {
	_, ok := errors.AsType[*http.MaxBytesError](err)
	return ok
}
