package egress

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// Metric names (STYLE §8): ours live under tpcluster. Attributes are the
// provider id (a few per bundle) and the outcome; never a subject or route.
const (
	metricRequests  = "tpcluster.egress.token_requests"
	metricDuration  = "tpcluster.egress.token_request.duration"
	metricCacheHits = "tpcluster.egress.cache_hits"
)

// metrics are the client's instruments; with a nil MeterProvider, no-ops.
type metrics struct {
	requests metric.Int64Counter
	duration metric.Float64Histogram
	hits     metric.Int64Counter
}

func newMetrics(mp metric.MeterProvider) (*metrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	meter := mp.Meter("github.com/tpcluster/tpcluster/internal/egress")
	m := new(metrics)
	var err error
	if m.requests, err = meter.Int64Counter(metricRequests, metric.WithUnit("{request}"),
		metric.WithDescription("Token requests sent to egress providers, by provider and outcome (ok, failed: unreachable, slow, refusing, or an answer outside the route's limits).")); err != nil {
		return nil, err
	}
	if m.duration, err = meter.Float64Histogram(metricDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of one token request to an egress provider (introspection included), by provider.")); err != nil {
		return nil, err
	}
	if m.hits, err = meter.Int64Counter(metricCacheHits, metric.WithUnit("{token}"),
		metric.WithDescription("Provider tokens served from the egress cache, by provider.")); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) request(ctx context.Context, provider string, took time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "failed"
	}
	m.requests.Add(ctx, 1, metric.WithAttributes(attribute.String("provider", provider), attribute.String("outcome", outcome)))
	m.duration.Record(ctx, took.Seconds(), metric.WithAttributes(attribute.String("provider", provider)))
}

func (m *metrics) hit(ctx context.Context, provider string) {
	m.hits.Add(ctx, 1, metric.WithAttributes(attribute.String("provider", provider)))
}
