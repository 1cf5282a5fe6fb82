package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// kv is one header field as written on the wire, in order.
type kv struct{ name, value string }

// rawSeen is one request as the recording upstream read it off the TCP
// connection: the head bytes, the fields in wire order, the body after
// de-chunking, and any trailer fields. net/http's parsed view would hide
// exactly what the hostile suite looks for (name spellings, duplicate and
// folded fields, trailers), so nothing here goes through it.
type rawSeen struct {
	head     []byte
	line     string // request line, without CRLF
	fields   []kv
	body     []byte
	chunked  bool
	trailers []kv
}

// rawUpstream is a TCP server that records each request byte for byte and
// answers it 200 "ok", keeping the connection alive as verifierd's and
// nginx's upstream pools expect.
type rawUpstream struct {
	ln   net.Listener
	Addr string
	URL  string

	mu   sync.Mutex
	reqs []rawSeen
	errs []string
	wg   sync.WaitGroup
}

func newRawUpstream(t testing.TB) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0") // the kernel picks; nothing must know it in advance
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln, Addr: ln.Addr().String(), URL: "http://" + ln.Addr().String()}
	u.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.wg.Go(func() { u.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		u.wg.Wait()
	})
	return u
}

// serve reads requests off c until it closes or one cannot be framed.
func (u *rawUpstream) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Minute)) // pooled connections idle between cases
		r, err := readRawRequest(br)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				u.mu.Lock()
				u.errs = append(u.errs, err.Error())
				u.mu.Unlock()
			}
			return
		}
		u.mu.Lock()
		u.reqs = append(u.reqs, r)
		u.mu.Unlock()
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
	}
}

func (u *rawUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// since returns the requests recorded after the first n, and any framing
// errors the upstream met.
func (u *rawUpstream) since(n int) ([]rawSeen, []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]rawSeen(nil), u.reqs[n:]...), append([]string(nil), u.errs...)
}

// readRawRequest reads one HTTP/1.1 request: head up to the empty line,
// then a chunked body (with its trailer section) or Content-Length bytes.
// It is strict: the senders are verifierd and nginx, which must write
// clean framing, so anything odd is an error the test reports.
func readRawRequest(br *bufio.Reader) (rawSeen, error) {
	var r rawSeen
	var head bytes.Buffer
	readLine := func() (string, error) {
		line, err := br.ReadString('\n')
		head.WriteString(line)
		if err != nil {
			if err == io.EOF && head.Len() > len(line) {
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
		if !strings.HasSuffix(line, "\r\n") {
			return "", fmt.Errorf("upstream: line without CRLF: %q", line)
		}
		return strings.TrimSuffix(line, "\r\n"), nil
	}
	line, err := readLine()
	if err != nil {
		return r, err
	}
	r.line = line
	for {
		l, err := readLine()
		if err != nil {
			return r, fmt.Errorf("upstream: head: %w", err)
		}
		if l == "" {
			break
		}
		f, err := parseField(l)
		if err != nil {
			return r, err
		}
		r.fields = append(r.fields, f)
	}
	r.head = head.Bytes()
	te, cl := fieldValues(r.fields, "Transfer-Encoding"), fieldValues(r.fields, "Content-Length")
	switch {
	case len(te) > 0 && len(cl) > 0:
		return r, errors.New("upstream: both Transfer-Encoding and Content-Length")
	case len(te) > 0:
		if len(te) != 1 || te[0] != "chunked" {
			return r, fmt.Errorf("upstream: Transfer-Encoding %q", te)
		}
		r.chunked = true
		return r, readChunked(br, &r)
	case len(cl) > 1:
		return r, fmt.Errorf("upstream: Content-Length %q", cl)
	case len(cl) == 1:
		n, err := strconv.ParseInt(cl[0], 10, 64)
		if err != nil || n < 0 || n > 16<<20 {
			return r, fmt.Errorf("upstream: Content-Length %q", cl[0])
		}
		r.body = make([]byte, n)
		if _, err := io.ReadFull(br, r.body); err != nil {
			return r, fmt.Errorf("upstream: body: %w", err)
		}
	}
	return r, nil
}

func readChunked(br *bufio.Reader, r *rawSeen) error {
	line := func() (string, error) {
		l, err := br.ReadString('\n')
		if err != nil || !strings.HasSuffix(l, "\r\n") {
			return "", fmt.Errorf("upstream: chunk line %q: %v", l, err)
		}
		return strings.TrimSuffix(l, "\r\n"), nil
	}
	for {
		l, err := line()
		if err != nil {
			return err
		}
		size, err := strconv.ParseInt(l, 16, 64)
		if err != nil || size < 0 || size > 16<<20 {
			return fmt.Errorf("upstream: chunk size %q", l)
		}
		if size == 0 {
			break
		}
		chunk := make([]byte, size+2)
		if _, err := io.ReadFull(br, chunk); err != nil || !bytes.HasSuffix(chunk, []byte("\r\n")) {
			return fmt.Errorf("upstream: chunk data: %v", err)
		}
		r.body = append(r.body, chunk[:size]...)
	}
	for {
		l, err := line()
		if err != nil {
			return err
		}
		if l == "" {
			return nil
		}
		f, err := parseField(l)
		if err != nil {
			return err
		}
		r.trailers = append(r.trailers, f)
	}
}

// parseField splits "name: value", dropping the optional whitespace around
// the value (RFC 9112 §5); the name is kept exactly as written.
func parseField(l string) (kv, error) {
	name, value, ok := strings.Cut(l, ":")
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return kv{}, fmt.Errorf("upstream: bad field line %q", l)
	}
	return kv{name, strings.Trim(value, " \t")}, nil
}

// fieldValues returns the values of every field named name, in any case.
func fieldValues(fs []kv, name string) []string {
	var out []string
	for _, f := range fs {
		if strings.EqualFold(f.name, name) {
			out = append(out, f.value)
		}
	}
	return out
}

// rawAnswer is what a raw client got back: status 0 when the server closed
// the connection without an answer.
type rawAnswer struct {
	status int
	header http.Header
	body   []byte
	err    error
}

func (a rawAnswer) reason() string {
	if h := a.header.Get("X-TrustPlane-Reason"); h != "" {
		return h
	}
	return answer{body: a.body}.reason()
}

// rawSend writes b to addr over one TCP connection and reads one final
// answer (skipping 100 Continue). With closeWrite the client half-closes
// after writing, so a server waiting for more bytes sees EOF at once
// instead of its read timeout.
func rawSend(addr string, b []byte, closeWrite bool, method string) rawAnswer {
	return rawSendN(addr, b, closeWrite, method, 1)[0]
}

// rawSendN is rawSend reading n answers off the connection, for bytes that
// hold more than one request (pipelining, a body shorter than the bytes
// sent). An answer that cannot be read ends the list with its error.
func rawSendN(addr string, b []byte, closeWrite bool, method string, n int) []rawAnswer {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return []rawAnswer{{err: err}}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(b); err != nil {
		return []rawAnswer{{err: err}}
	}
	if closeWrite {
		_ = c.(*net.TCPConn).CloseWrite()
	}
	br := bufio.NewReader(c)
	req := &http.Request{Method: method}
	var out []rawAnswer
	for len(out) < n {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return append(out, rawAnswer{err: err})
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != 101 {
			continue
		}
		out = append(out, rawAnswer{status: resp.StatusCode, header: resp.Header, body: body, err: err})
		req = &http.Request{Method: "GET"}
	}
	return out
}
