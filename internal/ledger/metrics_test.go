package ledger_test

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tpcluster/tpcluster/internal/core"
	"github.com/tpcluster/tpcluster/internal/ledger"
)

func TestMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(t.Context())
	js := singleNode(t)
	l := newLedger(t, ledger.Config{JetStream: js, Bucket: "METRICS", MeterProvider: mp})

	for i := range 3 {
		if err := l.Consume(t.Context(), key(string(rune('a'+i))), time.Minute, core.LedgerEntry{}); err != nil {
			t.Fatal(err)
		}
	}
	l.Consume(t.Context(), key("a"), time.Minute, core.LedgerEntry{})    // replay
	l.Consume(t.Context(), "not-a-key", time.Minute, core.LedgerEntry{}) // unavailable
	l.Consume(t.Context(), key("z"), 2*testMaxAge, core.LedgerEntry{})   // unavailable

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	liveKeys := int64(-1)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case "tpcluster.ledger.consume.duration":
				if m.Unit != "s" {
					t.Errorf("%s unit = %q, want s", m.Name, m.Unit)
				}
				for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
					v, _ := dp.Attributes.Value(attribute.Key("outcome"))
					counts[v.AsString()] = dp.Count
				}
			case "tpcluster.ledger.live_keys":
				for _, dp := range m.Data.(metricdata.Gauge[int64]).DataPoints {
					liveKeys = dp.Value
				}
			}
		}
	}
	if want := map[string]uint64{"created": 3, "replay": 1, "unavailable": 2}; len(counts) != 3 ||
		counts["created"] != 3 || counts["replay"] != 1 || counts["unavailable"] != 2 {
		t.Errorf("consume counts by outcome = %v, want %v", counts, want)
	}
	if liveKeys != 3 {
		t.Errorf("live keys = %d, want 3", liveKeys)
	}

	// The gauge does not ask JetStream on every collection.
	if err := l.Consume(t.Context(), key("d"), time.Minute, core.LedgerEntry{}); err != nil {
		t.Fatal(err)
	}
	if got := collectLiveKeys(t, reader); got != 3 {
		t.Errorf("live keys right after a collection = %d, want the cached 3", got)
	}
	// Ping refreshes it.
	if err := l.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := collectLiveKeys(t, reader); got != 4 {
		t.Errorf("live keys after Ping = %d, want 4", got)
	}
}

func collectLiveKeys(t *testing.T, reader *sdkmetric.ManualReader) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "tpcluster.ledger.live_keys" {
				for _, dp := range m.Data.(metricdata.Gauge[int64]).DataPoints {
					return dp.Value
				}
			}
		}
	}
	t.Fatal("no live_keys data point")
	return 0
}
