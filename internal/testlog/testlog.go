// Package testlog is where a test captures a component's slog output: a
// Buffer that the component's goroutines write and the test reads at the
// same time. It does not parse log lines; tests match what they expect.
//
// It is test support: only _test.go files import it.
package testlog

import (
	"bytes"
	"sync"
)

// Buffer is an io.Writer for a slog handler that is safe for concurrent
// use: the goroutines of the component under test write while the test
// reads with String. The zero value is an empty buffer ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer // guarded by mu
}

// Write appends p; it never fails.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
