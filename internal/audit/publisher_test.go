//go:build !auditfuzz

package audit

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
)

// TestPublish: events reach the stream once, in order, on their subjects,
// with Nats-Msg-Id = event_id, and acknowledged segments are trimmed.
func TestPublish(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv := natstest.Server(t)
	nc := natstest.Connect(t, srv.ClientURL())
	js := natstest.JetStream(t, nc)
	ensure(t, js)
	dir := t.TempDir()
	s := openSpool(t, SpoolConfig{Dir: dir, SegmentBytes: 8 << 10})
	p := newPublisher(t, s, PublisherConfig{Conn: nc, Window: 16})
	stop := runPublisher(t, p)
	appendN(t, s, 0, 500)
	flush(t, p)
	msgs := readStream(t, js, DefaultStream)
	checkChain(t, msgs, "node-a", 500)
	if msgs[0].subject != "trustplane.audit.deny.passport_missing" {
		t.Errorf("subject %q", msgs[0].subject)
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, "*.seg")); len(segs) != 1 {
		t.Errorf("%d segments after a full flush, want 1 (the active one)", len(segs))
	}
	stop()
	s.Close()
	nc.Close()
	srv.Shutdown()
	srv.WaitForShutdown()
}

// TestPublishOutage stops NATS while events keep coming: they stay in the
// spool, and after the restart every one arrives once, in order.
func TestPublishOutage(t *testing.T) {
	srv := natstest.Server(t)
	nc := natstest.Connect(t, srv.ClientURL())
	ensure(t, natstest.JetStream(t, nc))
	s := openSpool(t, SpoolConfig{Dir: t.TempDir(), SegmentBytes: 8 << 10})
	p := newPublisher(t, s, PublisherConfig{Conn: nc, Window: 32, AckTimeout: time.Second})
	runPublisher(t, p)
	appendN(t, s, 0, 100)
	flush(t, p)

	stopped := natstest.StopServer(t, srv)
	appendN(t, s, 100, 300) // a decision never waits for NATS
	if s.Pending() == 0 {
		t.Fatal("nothing pending during the outage")
	}
	srv = natstest.RestartServer(t, stopped)
	flush(t, p)
	nc2 := natstest.Connect(t, srv.ClientURL())
	checkChain(t, readStream(t, natstest.JetStream(t, nc2), DefaultStream), "node-a", 400)
}

// TestResendAfterCrash: a node killed after JetStream stored events but
// before its cursor moved sends them again on restart; the duplicate
// window stores none twice.
func TestResendAfterCrash(t *testing.T) {
	srv := natstest.Server(t)
	nc := natstest.Connect(t, srv.ClientURL())
	js := natstest.JetStream(t, nc)
	ensure(t, js)
	dir := t.TempDir()
	s, _ := OpenSpool(SpoolConfig{Dir: dir, NodeID: "node-a", SegmentBytes: 1 << 20})
	p := newPublisher(t, s, PublisherConfig{Conn: nc})
	stop := runPublisher(t, p)
	appendN(t, s, 0, 50)
	flush(t, p)
	stop()
	s.Close()
	// The cursor as a kill -9 could leave it: behind the stream.
	if err := os.WriteFile(filepath.Join(dir, cursorName), []byte("00000000000000000010\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = openSpool(t, SpoolConfig{Dir: dir, NodeID: "node-a", SegmentBytes: 1 << 20})
	if s.Pending() != 40 {
		t.Fatalf("Pending after a stale cursor = %d, want 40", s.Pending())
	}
	p = newPublisher(t, s, PublisherConfig{Conn: nc})
	runPublisher(t, p)
	appendN(t, s, 50, 10)
	flush(t, p)
	checkChain(t, readStream(t, js, DefaultStream), "node-a", 60)
}

// TestPublishStreamDeleted: when the stream disappears the head's publish
// fails with no responders; the publisher re-creates the stream and sends
// again after its back-off, without first sitting out AckTimeout on the
// failure it already received.
func TestPublishStreamDeleted(t *testing.T) {
	srv := natstest.Server(t)
	nc := natstest.Connect(t, srv.ClientURL())
	js := natstest.JetStream(t, nc)
	ensure(t, js)
	s := openSpool(t, SpoolConfig{Dir: t.TempDir()})
	p := newPublisher(t, s, PublisherConfig{Conn: nc, AckTimeout: time.Minute})
	runPublisher(t, p)
	appendN(t, s, 0, 10)
	flush(t, p)
	if err := js.DeleteStream(t.Context(), DefaultStream); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 10, 10)
	// Far below AckTimeout: the failure is known once nats.go gives up
	// on no responders (about half a second).
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush after the stream was deleted: %v", err)
	}
	msgs := readStream(t, js, DefaultStream)
	if len(msgs) != 10 {
		t.Errorf("%d events in the re-created stream, want 10", len(msgs))
	}
}

// TestEnsureStreamExisting: a second node finds the stream; a stream with
// the wrong shape is refused.
func TestEnsureStreamExisting(t *testing.T) {
	srv := natstest.Server(t)
	js := natstest.JetStream(t, natstest.Connect(t, srv.ClientURL()))
	ensure(t, js)
	if err := EnsureStream(t.Context(), js, StreamConfig{MaxAge: time.Hour}, nil); err != nil {
		t.Errorf("EnsureStream on an existing stream with other limits = %v", err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "BAD", Subjects: []string{"bad.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	if err := EnsureStream(t.Context(), js, StreamConfig{Name: "BAD"}, nil); err == nil {
		t.Error("EnsureStream accepted a memory stream without the audit subjects")
	} else {
		t.Logf("EnsureStream(BAD): %v", err)
	}
}

// TestPublisherMetrics reads the publisher's and the spool's instruments.
func TestPublisherMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	srv := natstest.Server(t)
	nc := natstest.Connect(t, srv.ClientURL())
	ensure(t, natstest.JetStream(t, nc))
	s := openSpool(t, SpoolConfig{Dir: t.TempDir(), MeterProvider: mp})
	p := newPublisher(t, s, PublisherConfig{Conn: nc, MeterProvider: mp})
	runPublisher(t, p)
	appendN(t, s, 0, 10)
	flush(t, p)
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int64{metricSpooled: 10, metricPublished: 10, metricUnrecordable: 0} {
		if got := sumOf(rm, name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	if got := gaugeOf(rm, metricSpoolPending); got != 0 {
		t.Errorf("%s = %d after a flush, want 0", metricSpoolPending, got)
	}
	var sawLatency, sawAge bool
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Histogram[float64]:
				sawLatency = sawLatency || (m.Name == metricPublishDur && len(d.DataPoints) == 1 && d.DataPoints[0].Count == 10)
			case metricdata.Gauge[float64]:
				sawAge = sawAge || (m.Name == metricOldestAge && len(d.DataPoints) == 1 && d.DataPoints[0].Value == 0)
			}
		}
	}
	if !sawLatency || !sawAge {
		t.Errorf("publish latency histogram seen %v, oldest age 0 seen %v", sawLatency, sawAge)
	}
}

// TestPublishR3: the stream with three replicas on a three-server cluster,
// and the leader of the stream restarted while events flow.
func TestPublishR3(t *testing.T) {
	if testing.Short() {
		t.Skip("three servers")
	}
	servers := natstest.Cluster(t, 3)
	nc := natstest.Connect(t, natstest.URLs(servers)...)
	js := natstest.JetStream(t, nc)
	if err := EnsureStream(t.Context(), js, StreamConfig{Replicas: 3}, nil); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(t.Context(), DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.Replicas; got != 3 {
		t.Fatalf("replicas = %d, want 3", got)
	}
	s := openSpool(t, SpoolConfig{Dir: t.TempDir()})
	p := newPublisher(t, s, PublisherConfig{Conn: nc, AckTimeout: 2 * time.Second})
	runPublisher(t, p)
	appendN(t, s, 0, 200)
	flush(t, p)

	// Stop the stream leader; a new one is elected and the rest arrives.
	leader := st.CachedInfo().Cluster.Leader
	for i, srv := range servers {
		if srv.Name() == leader {
			stopped := natstest.StopServer(t, srv)
			appendN(t, s, 200, 200)
			flush(t, p)
			servers[i] = natstest.RestartServer(t, stopped)
		}
	}
	appendN(t, s, 400, 100)
	flush(t, p)
	checkChain(t, readStream(t, js, DefaultStream), "node-a", 500)
}
