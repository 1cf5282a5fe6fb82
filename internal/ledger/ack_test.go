package ledger_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/ledger"
	"github.com/tpcluster/tpcluster/internal/natsx/natstest"
)

// TestFakePubAck is issue 12's attack: the ledger stream is deleted and
// something else answers on the key subjects with PubAcks. Each fake is an
// unavailable ledger (503), never an allow, and is counted.
func TestFakePubAck(t *testing.T) {
	tests := []struct {
		name     string
		ack      map[string]any
		wantKind string
	}{
		{"wrong stream", map[string]any{"stream": "FAKE", "seq": 1000}, "wrong_stream"},
		{"sequence backwards", map[string]any{"stream": "KV_FAKED", "seq": 1}, "sequence_backwards"},
		{"duplicate", map[string]any{"stream": "KV_FAKED", "seq": 1000, "duplicate": true}, "duplicate_ack"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reader := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			defer mp.Shutdown(t.Context())
			s := natstest.Server(t)
			nc := natstest.Connect(t, s.ClientURL())
			js := natstest.JetStream(t, nc)
			l := newLedger(t, ledger.Config{JetStream: js, Bucket: "FAKED", MeterProvider: mp})
			for _, jti := range []string{"a", "b"} {
				if err := l.Consume(t.Context(), key(jti), time.Minute, core.LedgerEntry{}); err != nil {
					t.Fatal(err)
				}
			}
			if err := js.DeleteStream(t.Context(), "KV_FAKED"); err != nil {
				t.Fatal(err)
			}
			reply, err := json.Marshal(tt.ack)
			if err != nil {
				t.Fatal(err)
			}
			fake := natstest.Connect(t, s.ClientURL())
			if _, err := fake.Subscribe("$KV.FAKED.>", func(m *nats.Msg) { m.Respond(reply) }); err != nil {
				t.Fatal(err)
			}
			if err := fake.Flush(); err != nil {
				t.Fatal(err)
			}

			// "a" was consumed before the stream went: its replay must
			// not pass on the fake's word.
			err = l.Consume(t.Context(), key("a"), time.Minute, core.LedgerEntry{})
			if !errors.Is(err, core.ErrLedgerUnavailable) || errors.Is(err, core.ErrReplay) {
				t.Fatalf("Consume with a fake PubAck (%s) = %v, want only ErrLedgerUnavailable", tt.name, err)
			}
			t.Logf("Consume with a fake PubAck: %v", err)
			if got := integrityCount(t, reader, tt.wantKind); got != 1 {
				t.Errorf("integrity errors of kind %s = %d, want 1", tt.wantKind, got)
			}
		})
	}
}

// TestConcurrentAcksInOrder: concurrent consumes, acknowledged in any
// order, are never taken for a sequence going backwards.
func TestConcurrentAcksInOrder(t *testing.T) {
	js := singleNode(t)
	l := newLedger(t, ledger.Config{JetStream: js, Bucket: "CONC"})
	const n = 200
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- l.Consume(t.Context(), key("c"+strings.Repeat("x", i)), time.Minute, core.LedgerEntry{})
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Consume = %v", err)
		}
	}
}

// TestPingStreamGoneOrRecreated: readiness notices the ledger stream
// deleted, and a stream recreated under the same name, whose consumed keys
// are gone.
func TestPingStreamGoneOrRecreated(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(t.Context())
	js := singleNode(t)
	l := newLedger(t, ledger.Config{JetStream: js, Bucket: "GONE", MeterProvider: mp})
	if err := l.Ping(t.Context()); err != nil {
		t.Fatalf("Ping = %v", err)
	}
	if err := js.DeleteStream(t.Context(), "KV_GONE"); err != nil {
		t.Fatal(err)
	}
	if err := l.Ping(t.Context()); err == nil || !strings.Contains(err.Error(), "gone") {
		t.Errorf("Ping after the stream was deleted = %v, want it to say gone", err)
	}
	if got := integrityCount(t, reader, "stream_missing"); got != 1 {
		t.Errorf("stream_missing count = %d, want 1", got)
	}
	// Another node (no credentials: a development cluster) recreates it.
	newLedger(t, ledger.Config{JetStream: js, Bucket: "GONE"})
	if err := l.Ping(t.Context()); err == nil || !strings.Contains(err.Error(), "recreated") {
		t.Errorf("Ping after the stream was recreated = %v, want it to say recreated", err)
	}
	if got := integrityCount(t, reader, "stream_recreated"); got != 1 {
		t.Errorf("stream_recreated count = %d, want 1", got)
	}
}

// TestNoCreate: a node with NoCreate never creates a missing bucket.
func TestNoCreate(t *testing.T) {
	js := singleNode(t)
	l, err := ledger.New(t.Context(), ledger.Config{JetStream: js, Bucket: "NOPE", MaxAge: testMaxAge, NoCreate: true})
	if err == nil {
		l.Close()
		t.Fatal("New with NoCreate on a missing bucket = nil error")
	}
	if !strings.Contains(err.Error(), "admin") {
		t.Errorf("New with NoCreate = %q, want it to say the admin role creates the bucket", err)
	}
	if _, err := js.Stream(t.Context(), "KV_NOPE"); err == nil {
		t.Error("New with NoCreate created the stream")
	}
	newLedger(t, ledger.Config{JetStream: js, Bucket: "NOPE"})
	newLedger(t, ledger.Config{JetStream: js, Bucket: "NOPE", NoCreate: true})
}

func integrityCount(t *testing.T, reader *sdkmetric.ManualReader, kind string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "tpcluster.ledger.integrity_errors" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if v, _ := dp.Attributes.Value(attribute.Key("kind")); v.AsString() == kind {
					return dp.Value
				}
			}
		}
	}
	return 0
}
