package natsx

import (
	"fmt"
	"log/slog"
	"sync"
)

// serverLogger routes nats-server's printf-style log into slog. Notices are
// Debug: nats-server prints a banner of twenty of them at every start, which
// is not what an operator of verifierd needs at Info. Warnings and errors keep
// their level. A fatal message is logged at Error and remembered, because the
// embedded server does not exit the process (as its own logger would) and
// StartServer must say what went wrong.
type serverLogger struct {
	log *slog.Logger

	mu    sync.Mutex
	fatal string // guarded by mu; the first fatal message
}

func (l *serverLogger) Noticef(format string, v ...any) {
	l.log.Debug("nats-server", "detail", sprintf{format, v})
}

func (l *serverLogger) Warnf(format string, v ...any) {
	l.log.Warn("nats-server", "detail", sprintf{format, v})
}

func (l *serverLogger) Errorf(format string, v ...any) {
	l.log.Error("nats-server", "detail", sprintf{format, v})
}

func (l *serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error("nats-server fatal", "detail", msg)
	l.mu.Lock()
	if l.fatal == "" {
		l.fatal = msg
	}
	l.mu.Unlock()
}

// Debugf and Tracef are never called: StartServer turns both flags off.
func (l *serverLogger) Debugf(format string, v ...any) {
	l.log.Debug("nats-server", "detail", sprintf{format, v})
}

func (l *serverLogger) Tracef(string, ...any) {}

// fatalMessage returns the first fatal message, or "".
func (l *serverLogger) fatalMessage() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}

// sprintf formats lazily, so a disabled level costs no formatting.
type sprintf struct {
	format string
	args   []any
}

func (s sprintf) LogValue() slog.Value {
	return slog.StringValue(fmt.Sprintf(s.format, s.args...))
}
