package ledger

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// Metric names (STYLE §8): ours live under tpcluster.
const (
	metricConsumeDuration = "tpcluster.ledger.consume.duration"
	metricLiveKeys        = "tpcluster.ledger.live_keys"
)

// liveKeysMaxAge is how old a live-key count may be before a collection
// asks JetStream again. The count comes from the stream's state, a round
// trip to the stream leader, so it is never read on the consume path and at
// most this often on the metrics path.
const liveKeysMaxAge = 5 * time.Second

type outcome int

const (
	outcomeCreated outcome = iota
	outcomeReplay
	outcomeUnavailable
)

// consumeBuckets are histogram bounds in seconds, from a loopback round trip
// to the 2s timeout.
var consumeBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5}

// metrics are the ledger's instruments. With a nil MeterProvider they are
// no-ops.
type metrics struct {
	duration  metric.Float64Histogram
	outcome   [3]metric.RecordOption // attribute sets built once, so recording does not allocate
	liveKeys  metric.Int64ObservableGauge
	bucket    metric.ObserveOption // the bucket attribute: shards are one gauge, a series each
	reg       metric.Registration
	integrity *integrity
	fetch     func(context.Context) (uint64, error)

	mu         sync.Mutex
	count      uint64    // guarded by mu; the last live-key count read
	countAt    time.Time // guarded by mu; when count was read, zero if never
	refreshing bool      // guarded by mu; a collection is reading the count
}

func newMetrics(mp metric.MeterProvider, l *Ledger) (*metrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	meter := mp.Meter("github.com/tpcluster/tpcluster/internal/ledger")
	m := &metrics{
		fetch:  l.liveKeysNow,
		bucket: metric.WithAttributeSet(attribute.NewSet(attribute.String("bucket", l.bucket))),
	}
	var err error
	m.duration, err = meter.Float64Histogram(metricConsumeDuration,
		metric.WithUnit("s"),
		metric.WithDescription("Duration of replay ledger consumes, by outcome (created, replay, unavailable)."),
		metric.WithExplicitBucketBoundaries(consumeBuckets...))
	if err != nil {
		return nil, err
	}
	for o, name := range []string{"created", "replay", "unavailable"} {
		m.outcome[o] = metric.WithAttributeSet(attribute.NewSet(attribute.String("outcome", name)))
	}
	// SPEC §7 capacity: server memory ≈ 180 bytes × live keys × replicas,
	// and live keys ≈ consume rate × mean remaining passport lifetime.
	m.liveKeys, err = meter.Int64ObservableGauge(metricLiveKeys,
		metric.WithUnit("{key}"),
		metric.WithDescription("Entries in the replay ledger bucket (live keys plus expiry markers), read at most every 5s."))
	if err != nil {
		return nil, err
	}
	m.reg, err = meter.RegisterCallback(m.observe, m.liveKeys)
	if err != nil {
		return nil, err
	}
	if m.integrity, err = newIntegrity(meter); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) recordConsume(ctx context.Context, d time.Duration, o outcome) {
	m.duration.Record(ctx, d.Seconds(), m.outcome[o])
}

// observe reports the live-key count.
func (m *metrics) observe(ctx context.Context, o metric.Observer) error {
	if n, ok := m.currentCount(ctx); ok {
		o.ObserveInt64(m.liveKeys, int64(n), m.bucket)
	}
	return nil
}

// currentCount returns the live-key count, reading it again if it is older
// than liveKeysMaxAge. While another collection reads it, the last count
// stands. If the read fails there is no count: a gap is more honest than an
// old number.
func (m *metrics) currentCount(ctx context.Context) (uint64, bool) {
	m.mu.Lock()
	n, at := m.count, m.countAt
	if fresh := !at.IsZero() && time.Since(at) < liveKeysMaxAge; fresh || m.refreshing {
		m.mu.Unlock()
		return n, !at.IsZero()
	}
	m.refreshing = true
	m.mu.Unlock()

	// The read happens outside mu (STYLE §6: no I/O under a lock).
	count, err := m.fetch(ctx)

	m.mu.Lock()
	defer m.mu.Unlock()
	m.refreshing = false
	if err != nil {
		return 0, false
	}
	m.count, m.countAt = count, time.Now()
	return count, true
}

// storeLiveKeys records a count read elsewhere (Ping).
func (m *metrics) storeLiveKeys(n uint64) {
	m.mu.Lock()
	m.count, m.countAt = n, time.Now()
	m.mu.Unlock()
}

func (m *metrics) close() error {
	return m.reg.Unregister()
}

// liveKeysNow reads the number of messages in the bucket's stream: one per
// live key (history 1), plus expiry markers for a second after each expiry.
func (l *Ledger) liveKeysNow(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	info, err := l.stream.Info(ctx)
	if err != nil {
		l.log.Debug("replay ledger live keys unavailable", "bucket", l.bucket, "error", err)
		return 0, err
	}
	return info.State.Msgs, nil
}
