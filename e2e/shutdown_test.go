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
// listener stays open for --shutdown-delay); a request decided during the
// delay, with NATS down, can reach the audit stream only through the
// shutdown flush, and NATS comes back only once the bundle watcher has
// stopped; the listener then closes and the slow request, released only
// after that, still completes 200 (the drain waited for it); both events
// are in the stream as soon as the process has exited 0 (the flush ran
// before NATS was drained); and the JSON log records carrying
// shutdown_step come once each, in order, each at or after the event it
// reports.
func TestGracefulShutdown(t *testing.T) {
	f := newFleet(t, fleetOpts{external: true}) // outlives the node: the stream is read after exit
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
	const delay = 8 * time.Second // generous: the readyz poll and one request must fit in it
	n := f.start(t, nodeOpts{id: "shutdown-a", files: true, flags: []string{"--upstream", slow.URL,
		"--log-format", "json", "--shutdown-delay", delay.String(), "--ledger-timeout", "1s",
		"--shutdown-timeout", "60s", "--audit-flush-timeout", "60s"}})

	// quick answers the polls and the request during the delay: an error
	// means nothing answered.
	quick := &http.Client{Timeout: 10 * time.Second}
	done := make(chan answerOrErr, 1)
	go func() {
		done <- fetch(http.DefaultClient, w.signed(t, "GET", n.URL+"/v1/orders/slow", "orders.get", nil))
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
		r := fetch(quick, mustGet(t, n.URL+"/_tp/readyz"))
		if r.err != nil {
			return r.err
		}
		if r.a.status != 503 || !strings.Contains(string(r.a.body), `"shutting_down":true`) {
			return fmt.Errorf("readyz %d %s", r.a.status, r.a.body)
		}
		unready = time.Now()
		return nil
	})
	// Still serving during the delay: a request decided with NATS down is
	// denied, and its event waits in the spool.
	f.ext.Stop()
	during := fetch(quick, w.signed(t, "GET", n.URL+"/v1/orders/during", "orders.get", nil))
	if during.err != nil || during.a.status != 503 || during.a.reason() != "replay_ledger_unavailable" {
		t.Fatalf("request during the shutdown delay = %d %s %v, want 503 replay_ledger_unavailable", during.a.status, during.a.body, during.err)
	}
	select {
	case r := <-done:
		t.Fatalf("the slow request finished before it was released: %d %s %v", r.a.status, r.a.body, r.err)
	default:
	}

	// The listener closes after the delay; only then is the request let go.
	testwait.Until(t, 30*time.Second, "listener closed after the shutdown delay", func() error {
		if r := fetch(quick, mustGet(t, n.URL+"/_tp/healthz")); r.err == nil {
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
	// NATS comes back only now: what reaches the stream from here on was
	// sent by the shutdown's flush.
	testwait.Until(t, 60*time.Second, "bundle watcher stopped", func() error {
		if !strings.Contains(n.logs.String(), `"shutdown_step":"bundles_stopped"`) {
			return errors.New("not yet")
		}
		return nil
	})
	natsBack := time.Now()
	f.ext.Start()
	select {
	case <-n.exited:
	case <-time.After(90 * time.Second):
		t.Fatal("verifierd did not exit after SIGTERM")
	}
	if code := n.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	t.Logf("shutdown: readyz 503 %s after SIGTERM, listener closed after %s (--shutdown-delay %s), exit %s after NATS came back",
		took.Round(time.Millisecond), closed.Round(time.Millisecond), delay, time.Since(natsBack).Round(time.Millisecond))

	// Read once, not polled: the flush happened before the process exited.
	want := map[string]string{r.a.header.Get("X-Request-Id"): "allowed", during.a.header.Get("X-Request-Id"): "replay_ledger_unavailable"}
	for _, m := range readAudit(t, f.url) {
		if want[m.ev.RequestID] == string(m.ev.ReasonCode) {
			delete(want, m.ev.RequestID)
		}
	}
	if len(want) != 0 {
		t.Errorf("audit events missing from the stream after exit (request id: reason): %v", want)
	}

	steps, closedConn := shutdownSteps(t, n.logs.String())
	order := []string{"readiness_off", "http_drained", "bundles_stopped", "audit_flushed", "nats_drained", "stopped"}
	var names []string
	for _, s := range steps {
		names = append(names, s.Step)
	}
	if !slices.Equal(names, order) {
		t.Fatalf("shutdown_step records %v, want %v", names, order)
	}
	at := func(name string) logRecord { return steps[slices.Index(names, name)] }
	// slog writes milliseconds, truncated: compare at that precision.
	if ro := at("readiness_off"); ro.Time.After(unready) {
		t.Errorf("readiness_off logged at %s, after readyz already answered 503 (%s)", ro.Time, unready)
	}
	if hd := at("http_drained"); answered.Load() == nil || hd.Time.Before(answered.Load().Truncate(time.Millisecond)) || hd.Complete == nil || !*hd.Complete {
		t.Errorf("http_drained %+v: want complete, at or after the in-flight answer (%v)", hd, answered.Load())
	}
	if af := at("audit_flushed"); af.AuditPending == nil || *af.AuditPending != 0 || af.Time.Before(natsBack.Truncate(time.Millisecond)) {
		t.Errorf("audit_flushed %+v: want audit_pending 0, after NATS came back (%s)", af, natsBack)
	}
	// The connection's closed handler ran between the flush and the end of
	// the drain: DrainAndWait waited for it.
	if closedConn < at("audit_flushed").Line || closedConn > at("nats_drained").Line {
		t.Errorf("\"nats connection closed\" at log record %d, want between audit_flushed (%d) and nats_drained (%d)",
			closedConn, at("audit_flushed").Line, at("nats_drained").Line)
	}
}

type answerOrErr struct {
	a   answer
	err error
}

// fetch sends req and reads the whole answer.
func fetch(c *http.Client, req *http.Request) answerOrErr {
	resp, err := c.Do(req)
	if err != nil {
		return answerOrErr{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answerOrErr{answer{status: resp.StatusCode, header: resp.Header, body: b}, err}
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
