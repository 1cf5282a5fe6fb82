package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tpcluster/tpcluster/internal/testwait"
)

// TestGracefulShutdown: SIGTERM while a slow request is in flight. The
// STYLE §6 order is proven from what happens, not from log text: readyz
// answers 503 shutting_down while the request is still being served (the
// listener stays open for --shutdown-delay); the listener then closes and
// the request, released only after that, still completes 200 (the drain
// waited for it); its audit event is in the stream as soon as the process
// has exited 0 (the spool was flushed before NATS was drained); and the
// JSON log records carrying shutdown_step come once each, in order, each
// at or after the event it reports.
func TestGracefulShutdown(t *testing.T) {
	f := newFleet(t, fleetOpts{servers: 1}) // outlives the node: the stream is read after exit
	w := f.world
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	var answered atomic.Pointer[time.Time] // when the upstream wrote its answer
	slow := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		rw.Write([]byte("slow ok"))
		now := time.Now()
		answered.Store(&now)
	}))
	t.Cleanup(slow.Close)
	const delay = 5 * time.Second
	n := f.start(t, nodeOpts{id: "shutdown-a", files: true,
		flags: []string{"--upstream", slow.URL, "--log-format", "json", "--shutdown-delay", delay.String()}})

	done := make(chan answerOrErr, 1)
	go func() {
		resp, err := http.DefaultClient.Do(w.signed(t, "GET", n.URL+"/v1/orders/slow", "orders.get", nil))
		if err != nil {
			done <- answerOrErr{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- answerOrErr{answer{status: resp.StatusCode, header: resp.Header, body: b}, err}
	}()
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("request never reached the upstream")
	}
	sigterm := time.Now()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// Readiness off while the request is in flight and the listener open.
	var unready time.Time
	took := testwait.Until(t, delay, "readyz 503 shutting_down after SIGTERM", func() error {
		a, err := get(n.URL + "/_tp/readyz")
		if err != nil {
			return err
		}
		if a.status != 503 || !strings.Contains(string(a.body), `"shutting_down":true`) {
			return fmt.Errorf("readyz %d %s", a.status, a.body)
		}
		unready = time.Now()
		return nil
	})
	select {
	case r := <-done:
		t.Fatalf("the slow request finished before it was released: %d %s %v", r.a.status, r.a.body, r.err)
	default:
	}

	// The listener closes after the delay; only then is the request let go.
	testwait.Until(t, 30*time.Second, "listener closed after the shutdown delay", func() error {
		if _, err := get(n.URL + "/_tp/healthz"); err == nil {
			return errors.New("still accepting")
		}
		return nil
	})
	closed := time.Since(sigterm)
	close(release)
	var r answerOrErr
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the in-flight request never completed")
	}
	if r.err != nil || r.a.status != 200 || string(r.a.body) != "slow ok" {
		t.Fatalf("in-flight request = %d %q %v, want 200 slow ok", r.a.status, r.a.body, r.err)
	}
	select {
	case <-n.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("verifierd did not exit after SIGTERM")
	}
	exited := time.Since(sigterm)
	if code := n.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	t.Logf("shutdown: readyz 503 %s after SIGTERM, listener closed after %s (--shutdown-delay %s), exit %s after SIGTERM",
		took.Round(time.Millisecond), closed.Round(time.Millisecond), delay, exited.Round(time.Millisecond))

	// Read once, not polled: the flush happened before the process exited.
	id := r.a.header.Get("X-Request-Id")
	var found bool
	for _, m := range readAudit(t, f.url) {
		if m.ev.RequestID == id && m.ev.Accepted {
			found = true
		}
	}
	if id == "" || !found {
		t.Errorf("no allowed audit event for the in-flight request %q in the stream after exit", id)
	}

	steps, closedConn := shutdownSteps(t, n.logs.String())
	want := []string{"readiness_off", "http_drained", "bundles_stopped", "audit_flushed", "nats_drained", "stopped"}
	var names []string
	for _, s := range steps {
		names = append(names, s.Step)
	}
	if !slices.Equal(names, want) {
		t.Fatalf("shutdown_step records %v, want %v", names, want)
	}
	at := func(name string) logRecord { return steps[slices.Index(names, name)] }
	// slog writes milliseconds: compare at that precision.
	if ro := at("readiness_off"); ro.Time.After(unready) {
		t.Errorf("readiness_off logged at %s, after readyz already answered 503 (%s)", ro.Time, unready)
	}
	if hd := at("http_drained"); answered.Load() == nil || hd.Time.Before(answered.Load().Truncate(time.Millisecond)) || hd.Complete == nil || !*hd.Complete {
		t.Errorf("http_drained %+v: want complete, at or after the in-flight answer (%v)", hd, answered.Load())
	}
	if af := at("audit_flushed"); af.AuditPending == nil || *af.AuditPending != 0 {
		t.Errorf("audit_flushed %+v: want audit_pending 0", af)
	}
	// The connection's closed handler ran between the flush and the end of
	// the drain: DrainAndWait waited for it.
	if closedConn < 0 || closedConn < at("audit_flushed").Line || closedConn > at("nats_drained").Line {
		t.Errorf("\"nats connection closed\" at log record %d, want between audit_flushed (%d) and nats_drained (%d)",
			closedConn, at("audit_flushed").Line, at("nats_drained").Line)
	}
}

type answerOrErr struct {
	a   answer
	err error
}

// get is a GET of url with a short timeout: an error means nothing answered.
func get(url string) (answer, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b}, err
}

// logRecord is one JSON log record of verifierd's, with the fields the
// shutdown test reads.
type logRecord struct {
	Line         int `json:"-"` // index among the log's records
	Time         time.Time
	Msg          string
	Step         string  `json:"shutdown_step"`
	Complete     *bool   `json:"complete"`
	AuditPending *uint64 `json:"audit_pending"`
}

// shutdownSteps parses a --log-format json log and returns the records that
// carry shutdown_step, in order, and the index of the "nats connection
// closed" record (-1 if none). A line that is not JSON fails the test.
func shutdownSteps(t testing.TB, logs string) (steps []logRecord, connClosed int) {
	t.Helper()
	connClosed = -1
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for i := 0; sc.Scan(); i++ {
		var rec logRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %d is not JSON (%v): %s", i+1, err, sc.Text())
		}
		rec.Line = i
		if rec.Step != "" {
			steps = append(steps, rec)
		}
		if rec.Msg == "nats connection closed" {
			connClosed = i
		}
	}
	return steps, connClosed
}
