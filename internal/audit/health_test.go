//go:build !auditfuzz

package audit

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
	"github.com/tpcluster/tpcluster/internal/testlog"
	"github.com/tpcluster/tpcluster/internal/testwait"
)

// TestOldestPendingAge: the age of the oldest unacknowledged event comes
// from the spool, so it grows with no publisher at all, and follows the
// acknowledgements.
func TestOldestPendingAge(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(d time.Duration) { mu.Lock(); now = t0.Add(d); mu.Unlock() }
	s := openSpool(t, SpoolConfig{Dir: t.TempDir(), Now: clock, SyncInterval: time.Hour})

	age := func() time.Duration {
		t.Helper()
		a, err := s.OldestPendingAge()
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	if a := age(); a != 0 {
		t.Errorf("empty spool: age %v, want 0", a)
	}
	for i := range 3 {
		set(time.Duration(i) * time.Second)
		appendN(t, s, i, 1)
	}
	set(10 * time.Second)
	if a := age(); a != 10*time.Second {
		t.Errorf("3 pending, none fsynced or published: age %v, want 10s", a)
	}
	s.ack(1)
	if a := age(); a != 9*time.Second {
		t.Errorf("after the first ack: age %v, want 9s", a)
	}
	s.ack(3)
	if a := age(); a != 0 {
		t.Errorf("everything acknowledged: age %v, want 0", a)
	}
}

// TestStreamRefused: a stream the servers refuse (its size limit exceeds
// max_file_store, as the 10 GiB default did on the shipped servers, issue
// 13) is reported: StreamErr holds the NATS error, an error is logged with
// it, the failures are counted, and the spool's age grows, although the
// publisher never got to send anything.
func TestStreamRefused(t *testing.T) {
	srv := natstest.ServerWith(t, func(o *server.Options) { o.JetStreamMaxStore = 4 << 20 })
	nc := natstest.Connect(t, srv.ClientURL())
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	var logs testlog.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	s := openSpool(t, SpoolConfig{Dir: t.TempDir(), MeterProvider: mp})
	p := newPublisher(t, s, PublisherConfig{Conn: nc, MeterProvider: mp, Logger: log,
		Stream: StreamConfig{MaxBytes: 64 << 20}})
	if err := p.StreamErr(); err == nil {
		t.Fatal("StreamErr before Run = nil")
	}
	appendN(t, s, 0, 1)
	runPublisher(t, p)

	took := testwait.Until(t, 30*time.Second, "StreamErr names the servers' insufficient storage refusal", func() error {
		if err := p.StreamErr(); !strings.Contains(errString(err), "insufficient") {
			return fmt.Errorf("StreamErr = %v", err)
		}
		return nil
	})
	t.Logf("StreamErr after %v: %v", took, p.StreamErr())
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	if got := sumOf(rm, metricStreamFails); got < 1 {
		t.Errorf("%s = %d, want at least 1", metricStreamFails, got)
	}
	if got := floatGaugeOf(rm, metricOldestAge); got <= 0 {
		t.Errorf("%s = %v with an event stuck in the spool, want > 0", metricOldestAge, got)
	}
	if out := logs.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "insufficient") {
		t.Errorf("log lacks an error naming the NATS refusal:\n%s", out)
	}
}

// TestStreamErrClearedByAck: a quorum loss makes a publish fail and the
// stream check that follows it fail too (no leader to answer); once the
// quorum is back and the stream acknowledges the spool, StreamErr is nil
// again, although nothing re-checked the stream.
func TestStreamErrClearedByAck(t *testing.T) {
	servers := natstest.Cluster(t, 3)
	nc := natstest.Connect(t, servers[0].ClientURL())
	s := openSpool(t, SpoolConfig{Dir: t.TempDir()})
	p := newPublisher(t, s, PublisherConfig{Conn: nc, Stream: StreamConfig{Replicas: 3}})
	runPublisher(t, p)
	appendN(t, s, 0, 1)
	testwait.Until(t, 60*time.Second, "the first event acknowledged", func() error {
		if n := s.Pending(); n != 0 || p.StreamErr() != nil {
			return fmt.Errorf("%d pending, StreamErr %v", n, p.StreamErr())
		}
		return nil
	})

	stopped := []*natstest.Stopped{natstest.StopServer(t, servers[1]), natstest.StopServer(t, servers[2])}
	appendN(t, s, 1, 1)
	took := testwait.Until(t, 90*time.Second, "StreamErr set during the quorum loss", func() error {
		if p.StreamErr() == nil {
			return errors.New("StreamErr = nil")
		}
		return nil
	})
	t.Logf("quorum lost: StreamErr after %v: %v", took, p.StreamErr())
	for _, st := range stopped {
		natstest.RestartServer(t, st)
	}
	took = testwait.Until(t, 90*time.Second, "every event acknowledged and StreamErr nil", func() error {
		if n := s.Pending(); n != 0 || p.StreamErr() != nil {
			return fmt.Errorf("%d pending, StreamErr %v", n, p.StreamErr())
		}
		return nil
	})
	t.Logf("quorum back: drained and StreamErr nil %v after the restart", took)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func floatGaugeOf(rm metricdata.ResourceMetrics, name string) float64 {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[float64]); ok && m.Name == name && len(g.DataPoints) > 0 {
				return g.DataPoints[0].Value
			}
		}
	}
	return -1
}
