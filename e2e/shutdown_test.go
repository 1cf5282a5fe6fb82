package e2e

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestGracefulShutdown: SIGTERM while a request is in flight. The request
// finishes (200), the process exits 0, and it stops in the order STYLE §6
// fixes: HTTP drained, then NATS drained, then the embedded server.
func TestGracefulShutdown(t *testing.T) {
	w := newWorld(t)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	slow := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		rw.Write([]byte("slow ok"))
	}))
	defer slow.Close()
	n := startVerifierd(t, w, true, "--upstream", slow.URL)

	type result struct {
		a   answer
		err error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.DefaultClient.Do(w.signed(t, "GET", n.URL+"/v1/orders/slow", "orders.get", nil))
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		buf := make([]byte, 64)
		k, _ := resp.Body.Read(buf)
		done <- result{a: answer{status: resp.StatusCode, body: buf[:k]}}
	}()
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("request never reached the upstream")
	}
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New connections are refused once the listener closes.
	waitFor(t, 10*time.Second, "listener closed after SIGTERM", func() error {
		resp, err := http.Get(n.URL + "/_tp/healthz")
		if err == nil {
			resp.Body.Close()
			return errString("still accepting")
		}
		return nil
	})
	close(release)
	r := <-done
	if r.err != nil || r.a.status != 200 || string(r.a.body) != "slow ok" {
		t.Fatalf("in-flight request = %d %q %v, want 200 slow ok", r.a.status, r.a.body, r.err)
	}
	select {
	case <-n.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("verifierd did not exit after SIGTERM")
	}
	if code := n.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	logs := n.logs.String()
	order := []string{"nats connection closed", "nats server stopped", "verifierd stopped"}
	last := -1
	for _, m := range order {
		i := strings.Index(logs, m)
		if i < 0 || i < last {
			t.Errorf("shutdown log order: %q missing or out of order (want %v)", m, order)
		}
		last = i
	}
}

type errString string

func (e errString) Error() string { return string(e) }
