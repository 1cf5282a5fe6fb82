package proxy

import (
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"testing"
	"time"

	tpotel "github.com/tpcluster/tpcluster/internal/telemetry"
)

// scrapeDurations reads /_tp/metrics and returns the observation count of
// tpcluster_decision_duration_seconds by reason_code, and their sum.
func scrapeDurations(t *testing.T, base string) (map[string]int, float64) {
	t.Helper()
	resp, text := do(t, mustRequest(t, "GET", base+"/_tp/metrics"))
	if resp.StatusCode != 200 {
		t.Fatalf("/_tp/metrics = %d", resp.StatusCode)
	}
	re := regexp.MustCompile(`(?m)^tpcluster_decision_duration_seconds_count\{[^}]*reason_code="([a-z_]+)"[^}]*\} (\d+)$`)
	out := map[string]int{}
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		n, _ := strconv.Atoi(m[2])
		out[m[1]] += n
	}
	var sum float64
	for _, m := range regexp.MustCompile(`(?m)^tpcluster_decision_duration_seconds_sum\{[^}]*\} (\S+)$`).FindAllStringSubmatch(text, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		sum += v
	}
	return out, sum
}

func mustRequest(t *testing.T, method, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestDecisionDurationScraped: tpcluster.decision.duration, scraped from
// /_tp/metrics as Prometheus text, counts a proxied request once it has
// been handed to the upstream, while the upstream still holds it (the
// upstream's answer is not the decision's time), and counts denies and
// check-mode answers once they are written. The audit
// record is part of the decision: a record that takes at least 20ms makes
// every observation at least that long (a lower bound the sleep itself
// guarantees, not a wall-clock limit).
func TestDecisionDurationScraped(t *testing.T) {
	const recordTime = 20 * time.Millisecond
	tel, err := tpotel.New(t.Context(), tpotel.Config{ServiceName: "verifierd", NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tel.Shutdown(context.WithoutCancel(t.Context())) })
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		arrived <- struct{}{}
		<-release
		io.WriteString(w, "upstream ok")
	}))
	t.Cleanup(up.Close)
	upURL, _ := url.Parse(up.URL)
	r := newRig(t, func(c *Config) {
		c.Upstream, c.MeterProvider, c.Metrics = upURL, tel.Meter, tel.Metrics
		c.Record = func(context.Context, *Record) error {
			time.Sleep(recordTime)
			return nil
		}
	})

	req := r.sign(t, "GET", r.srv.URL, "/v1/orders/o1", "orders.get", nil)
	replay := req.Clone(t.Context())
	done := make(chan int)
	go func() {
		resp, _ := do(t, req)
		done <- resp.StatusCode
	}()
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		close(release)
		t.Fatal("the request never reached the upstream")
	}
	got, _ := scrapeDurations(t, r.srv.URL)
	close(release)
	if got["allowed"] != 1 {
		t.Errorf("while the upstream holds the request, decision durations by reason = %v, want allowed: 1", got)
	}
	if status := <-done; status != 200 {
		t.Fatalf("GET = %d, want 200", status)
	}

	if resp, _ := do(t, replay); resp.StatusCode != 409 {
		t.Fatalf("replay = %d, want 409", resp.StatusCode)
	}
	// Check mode: the original request's headers, as a gateway passes them.
	q := r.sign(t, "GET", "http://orders.gw.example", "/v1/orders/o2", "orders.get", nil)
	c := mustRequest(t, "GET", r.srv.URL+"/_tp/check")
	maps.Copy(c.Header, q.Header)
	c.Header.Set("X-Original-Method", "GET")
	c.Header.Set("X-Original-Uri", "/v1/orders/o2")
	c.Header.Set("X-Forwarded-Host", "orders.gw.example")
	c.Header.Set("X-Forwarded-Proto", "http")
	if resp, _ := do(t, c); resp.StatusCode != 200 {
		t.Fatalf("check = %d, want 200", resp.StatusCode)
	}
	got, sum := scrapeDurations(t, r.srv.URL)
	if want := map[string]int{"allowed": 2, "jti_replay": 1}; !maps.Equal(got, want) {
		t.Errorf("decision durations by reason = %v, want %v", got, want)
	}
	if min := 3 * recordTime.Seconds(); sum < min {
		t.Errorf("sum of decision durations = %gs, want at least %gs: the audit record is part of the decision", sum, min)
	}
	t.Logf("3 decisions, %gs in all", sum)
}
