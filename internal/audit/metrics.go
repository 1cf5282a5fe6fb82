package audit

import (
	"context"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

const instrumentation = "github.com/tpcluster/tpcluster/internal/audit"

// Metric names (STYLE §8).
const (
	metricSpooled      = "tpcluster.audit.events.spooled"
	metricUnrecordable = "tpcluster.audit.events.unrecordable"
	metricSpoolSize    = "tpcluster.audit.spool.size"
	metricSpoolLimit   = "tpcluster.audit.spool.limit"
	metricSpoolPending = "tpcluster.audit.spool.pending"
	metricPublished    = "tpcluster.audit.events.published"
	metricPublishDur   = "tpcluster.audit.publish.duration"
	metricFailures     = "tpcluster.audit.publish.failures"
	metricOldestAge    = "tpcluster.audit.spool.oldest_age"
	metricStreamFails  = "tpcluster.audit.stream.failures"
	metricSpoolBroken  = "tpcluster.audit.spool.broken"
	metricRepairFails  = "tpcluster.audit.spool.repair.failures"
)

// spoolMetrics are the spool's instruments; with a nil provider, no-ops.
type spoolMetrics struct {
	spooled metric.Int64Counter
	// unrecordable is observed rather than added to, so the series is
	// exported at 0 from the start: an alert on increase() sees the first
	// unrecordable event, which a series born at 1 would hide.
	unrecordable atomic.Int64
	// repairFailures counts failed attempts to repair a broken spool.
	repairFailures atomic.Int64
}

func newSpoolMetrics(mp metric.MeterProvider, s *Spool) (*spoolMetrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter(instrumentation)
	sm := new(spoolMetrics)
	var err error
	if sm.spooled, err = m.Int64Counter(metricSpooled,
		metric.WithUnit("{event}"),
		metric.WithDescription("Audit events appended to the spool.")); err != nil {
		return nil, err
	}
	// SPEC §9: the denials a full (or failing) spool cannot record are
	// counted, never dropped silently.
	unrec, err := m.Int64ObservableCounter(metricUnrecordable,
		metric.WithUnit("{event}"),
		metric.WithDescription("Audit events that could not be recorded (spool full or failing); each such request was denied audit_unavailable."))
	if err != nil {
		return nil, err
	}
	size, err := m.Int64ObservableGauge(metricSpoolSize,
		metric.WithUnit("By"),
		metric.WithDescription("Bytes of audit spool files on disk."))
	if err != nil {
		return nil, err
	}
	// An alert on "near full" divides by this rather than by a
	// copy of --audit-spool-max-bytes that drifts from the flag.
	limit, err := m.Int64ObservableGauge(metricSpoolLimit,
		metric.WithUnit("By"),
		metric.WithDescription("Size limit of the audit spool (--audit-spool-max-bytes); at it every request is denied audit_unavailable."))
	if err != nil {
		return nil, err
	}
	pend, err := m.Int64ObservableGauge(metricSpoolPending,
		metric.WithUnit("{event}"),
		metric.WithDescription("Audit events in the spool not yet acknowledged by JetStream."))
	if err != nil {
		return nil, err
	}
	// Measured from the spool, so it grows while the publisher
	// cannot even start (a stream JetStream refuses to create).
	age, err := m.Float64ObservableGauge(metricOldestAge,
		metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest audit event not yet acknowledged by JetStream; 0 when the spool is drained."))
	if err != nil {
		return nil, err
	}
	// An alert on it pages at once: while it is 1 every request is
	// denied, whatever the spool's size says.
	// No unit: "1" would make the Prometheus name end in _ratio.
	broken, err := m.Int64ObservableGauge(metricSpoolBroken,
		metric.WithDescription("1 while the audit spool is broken by a failed fsync or write and every request is denied audit_unavailable; 0 once it has repaired itself."))
	if err != nil {
		return nil, err
	}
	repairs, err := m.Int64ObservableCounter(metricRepairFails,
		metric.WithUnit("{failure}"),
		metric.WithDescription("Failed attempts to repair a broken audit spool (retried with back-off)."))
	if err != nil {
		return nil, err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		var b int64
		if s.Broken() != nil {
			b = 1
		}
		o.ObserveInt64(broken, b)
		o.ObserveInt64(repairs, sm.repairFailures.Load())
		o.ObserveInt64(size, s.Bytes())
		o.ObserveInt64(limit, s.cfg.MaxBytes)
		o.ObserveInt64(pend, int64(s.Pending()))
		o.ObserveInt64(unrec, sm.unrecordable.Load())
		a, err := s.OldestPendingAge()
		if err != nil {
			return err
		}
		o.ObserveFloat64(age, a.Seconds())
		return nil
	}, size, limit, pend, age, unrec, broken, repairs)
	if err != nil {
		return nil, err
	}
	return sm, nil
}

// publisherMetrics are the publisher's instruments.
type publisherMetrics struct {
	count    metric.Int64Counter
	duration metric.Float64Histogram
	// The failure counts are observed, exported at 0 from the start (see
	// spoolMetrics.unrecordable).
	failures atomic.Int64
	// streamFailures counts attempts to create or check the stream that
	// failed (a refused stream once went unnoticed).
	streamFailures atomic.Int64
	stored         metric.AddOption
	dup            metric.AddOption
}

func newPublisherMetrics(mp metric.MeterProvider) (*publisherMetrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter(instrumentation)
	pm := &publisherMetrics{
		stored: metric.WithAttributeSet(attribute.NewSet(attribute.Bool("duplicate", false))),
		dup:    metric.WithAttributeSet(attribute.NewSet(attribute.Bool("duplicate", true))),
	}
	var err error
	if pm.count, err = m.Int64Counter(metricPublished,
		metric.WithUnit("{event}"),
		metric.WithDescription("Audit events acknowledged by JetStream; duplicate=true when the duplicate window dropped a resend.")); err != nil {
		return nil, err
	}
	if pm.duration, err = m.Float64Histogram(metricPublishDur,
		metric.WithUnit("s"),
		metric.WithDescription("Time from an audit event's publish to its acknowledgement."),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)); err != nil {
		return nil, err
	}
	failures, err := m.Int64ObservableCounter(metricFailures,
		metric.WithUnit("{failure}"),
		metric.WithDescription("Audit publish attempts that failed and were retried from the spool."))
	if err != nil {
		return nil, err
	}
	streamFailures, err := m.Int64ObservableCounter(metricStreamFails,
		metric.WithUnit("{failure}"),
		metric.WithDescription("Attempts to create or check the audit stream that failed; while they fail no event leaves the spool."))
	if err != nil {
		return nil, err
	}
	if _, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(failures, pm.failures.Load())
		o.ObserveInt64(streamFailures, pm.streamFailures.Load())
		return nil
	}, failures, streamFailures); err != nil {
		return nil, err
	}
	return pm, nil
}

func (m *publisherMetrics) published(ctx context.Context, d time.Duration, duplicate bool) {
	attrs := m.stored
	if duplicate {
		attrs = m.dup
	}
	m.count.Add(ctx, 1, attrs)
	m.duration.Record(ctx, d.Seconds())
}
