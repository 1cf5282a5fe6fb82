package bundlekv

import (
	"context"

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
	appliedC, rejectedC metric.Int64Counter
	kind                map[Kind]metric.MeasurementOption // attribute sets built once
}

func newMetrics(mp metric.MeterProvider, w *Watcher) (*metrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	meter := mp.Meter("github.com/tpcluster/tpcluster/internal/bundlekv")
	m := &metrics{kind: make(map[Kind]metric.MeasurementOption)}
	for _, k := range []Kind{KindTrustMaterial, KindPolicyBundle, KindBeacon} {
		m.kind[k] = metric.WithAttributeSet(attribute.NewSet(attribute.String("kind", string(k))))
	}
	var err error
	if m.appliedC, err = meter.Int64Counter(metricApplied, metric.WithUnit("{document}"),
		metric.WithDescription("Bundle documents verified and applied, by kind.")); err != nil {
		return nil, err
	}
	if m.rejectedC, err = meter.Int64Counter(metricRejected, metric.WithUnit("{document}"),
		metric.WithDescription("Bundle documents and beacons refused (bad signature, rollback, malformed), by kind; the last good pair stays.")); err != nil {
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
		s := w.snap.Load()
		if s == nil {
			return nil
		}
		o.ObserveFloat64(age, w.cfg.Now().Sub(s.ViewTime).Seconds())
		o.ObserveInt64(seq, s.Policy.Sequence, m.kind[KindPolicyBundle])
		o.ObserveInt64(seq, s.Trust.Sequence, m.kind[KindTrustMaterial])
		return nil
	}, age, seq)
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) applied(ctx context.Context, k Kind)  { m.appliedC.Add(ctx, 1, m.kind[k]) }
func (m *metrics) rejected(ctx context.Context, k Kind) { m.rejectedC.Add(ctx, 1, m.kind[k]) }
