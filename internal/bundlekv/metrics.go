package bundlekv

import (
	"context"
	"slices"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// Metric names (STYLE §8): ours live under tpcluster.
const (
	metricAge      = "tpcluster.bundle.age"
	metricSequence = "tpcluster.bundle.sequence"
	metricApplied  = "tpcluster.bundle.applied"
	metricRejected = "tpcluster.bundle.rejected"
)

// metrics are the watcher's instruments; with a nil MeterProvider, no-ops.
type metrics struct {
	appliedC metric.Int64Counter
	// rejectedN is observed rather than added to, so every kind's series is
	// exported at 0 from the start: an alert on increase() sees the first
	// rejection, which a series born at 1 would hide. Indexed by kinds.
	rejectedN [len(kinds)]atomic.Int64
	kind      map[Kind]metric.MeasurementOption // attribute sets built once
}

// kinds are the documents a watcher counts.
var kinds = [...]Kind{KindTrustMaterial, KindPolicyBundle, KindBeacon}

func newMetrics(mp metric.MeterProvider, w *Watcher) (*metrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	meter := mp.Meter("github.com/tpcluster/tpcluster/internal/bundlekv")
	m := &metrics{kind: make(map[Kind]metric.MeasurementOption)}
	for _, k := range kinds {
		m.kind[k] = metric.WithAttributeSet(attribute.NewSet(attribute.String("kind", string(k))))
	}
	var err error
	if m.appliedC, err = meter.Int64Counter(metricApplied, metric.WithUnit("{document}"),
		metric.WithDescription("Bundle documents verified and applied, by kind.")); err != nil {
		return nil, err
	}
	rejected, err := meter.Int64ObservableCounter(metricRejected, metric.WithUnit("{document}"),
		metric.WithDescription("Bundle documents and beacons refused (bad signature, rollback, malformed), by kind; the last good pair stays."))
	if err != nil {
		return nil, err
	}
	age, err := meter.Float64ObservableGauge(metricAge, metric.WithUnit("s"),
		metric.WithDescription("Age of the bundle view (SPEC §8.3): now minus the later of the policy's and the newest covering beacon's issued_at. Absent while no pair is loaded."))
	if err != nil {
		return nil, err
	}
	seq, err := meter.Int64ObservableGauge(metricSequence, metric.WithUnit("{sequence}"),
		metric.WithDescription("Sequence of the applied trust material and policy bundle, by kind."))
	if err != nil {
		return nil, err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for i, k := range kinds {
			o.ObserveInt64(rejected, m.rejectedN[i].Load(), m.kind[k])
		}
		s := w.snap.Load()
		if s == nil {
			return nil
		}
		o.ObserveFloat64(age, w.cfg.Now().Sub(s.ViewTime).Seconds())
		o.ObserveInt64(seq, s.Policy.Sequence, m.kind[KindPolicyBundle])
		o.ObserveInt64(seq, s.Trust.Sequence, m.kind[KindTrustMaterial])
		return nil
	}, age, seq, rejected)
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) applied(ctx context.Context, k Kind) { m.appliedC.Add(ctx, 1, m.kind[k]) }
func (m *metrics) rejected(k Kind) {
	if i := slices.Index(kinds[:], k); i >= 0 {
		m.rejectedN[i].Add(1)
	}
}
