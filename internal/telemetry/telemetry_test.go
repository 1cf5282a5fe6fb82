package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPrometheus: instruments made from the meter provider show up on the
// Prometheus handler.
func TestPrometheus(t *testing.T) {
	p, err := New(t.Context(), Config{ServiceName: "verifierd", NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.WithoutCancel(t.Context()))
	c, err := p.Meter.Meter("test").Int64Counter("tpcluster.test.things")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(t.Context(), 3)
	rec := httptest.NewRecorder()
	p.Metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/_tp/metrics", nil))
	if !strings.Contains(rec.Body.String(), "tpcluster_test_things_total") {
		t.Errorf("metrics text lacks the counter:\n%s", rec.Body.String())
	}
}

// TestOTLP: with OTEL_EXPORTER_OTLP_ENDPOINT set, traces and metrics are
// exported over OTLP/HTTP (here to a local recorder).
func TestOTLP(t *testing.T) {
	var (
		mu    sync.Mutex
		paths = map[string]int{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		paths[r.URL.Path]++
		mu.Unlock()
	}))
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")

	p, err := New(t.Context(), Config{ServiceName: "verifierd", NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	_, span := p.Tracer.Tracer("test").Start(t.Context(), "decide")
	span.End()
	c, _ := p.Meter.Meter("test").Int64Counter("tpcluster.test.things")
	c.Add(t.Context(), 1)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if paths["/v1/traces"] == 0 || paths["/v1/metrics"] == 0 {
		t.Errorf("OTLP requests by path = %v, want /v1/traces and /v1/metrics", paths)
	}
}
