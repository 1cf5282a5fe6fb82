package egress

import (
	"context"
	"sync/atomic"
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
	duration metric.Float64Histogram
	// The request and cache-hit counts are observed rather than added to,
	// so every provider with a credential has its series, failed
	// included, at 0 from the start: an alert on increase()
	// (TPClusterEgressTokenFailing, deploy/monitoring) sees the first
	// failure, which a series born at 1 would hide. Built once in
	// newMetrics; only the counts change.
	providers map[string]*providerCounts
}

// providerCounts are one provider's counts and attribute sets.
type providerCounts struct {
	ok, failed, hits          atomic.Int64
	okAttr, failedAttr, pAttr metric.MeasurementOption
}

// newMetrics registers the instruments for the providers the node has a
// credential for; Token asks no other provider (no credential, no request).
func newMetrics(mp metric.MeterProvider, creds map[string]Credential) (*metrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	meter := mp.Meter("github.com/tpcluster/tpcluster/internal/egress")
	m := &metrics{providers: make(map[string]*providerCounts, len(creds))}
	for id := range creds {
		p := attribute.String("provider", id)
		m.providers[id] = &providerCounts{
			okAttr:     metric.WithAttributeSet(attribute.NewSet(p, attribute.String("outcome", "ok"))),
			failedAttr: metric.WithAttributeSet(attribute.NewSet(p, attribute.String("outcome", "failed"))),
			pAttr:      metric.WithAttributeSet(attribute.NewSet(p)),
		}
	}
	requests, err := meter.Int64ObservableCounter(metricRequests, metric.WithUnit("{request}"),
		metric.WithDescription("Token requests sent to egress providers, by provider and outcome (ok, failed: unreachable, slow, refusing, or an answer outside the route's limits)."))
	if err != nil {
		return nil, err
	}
	if m.duration, err = meter.Float64Histogram(metricDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of one token request to an egress provider (introspection included), by provider.")); err != nil {
		return nil, err
	}
	hits, err := meter.Int64ObservableCounter(metricCacheHits, metric.WithUnit("{token}"),
		metric.WithDescription("Provider tokens served from the egress cache, by provider."))
	if err != nil {
		return nil, err
	}
	if len(m.providers) == 0 {
		return m, nil
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, p := range m.providers {
			o.ObserveInt64(requests, p.ok.Load(), p.okAttr)
			o.ObserveInt64(requests, p.failed.Load(), p.failedAttr)
			o.ObserveInt64(hits, p.hits.Load(), p.pAttr)
		}
		return nil
	}, requests, hits)
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) request(ctx context.Context, provider string, took time.Duration, err error) {
	p, ok := m.providers[provider]
	if !ok { // not reached: Token asks only providers with a credential
		return
	}
	if err != nil {
		p.failed.Add(1)
	} else {
		p.ok.Add(1)
	}
	m.duration.Record(ctx, took.Seconds(), p.pAttr)
}

func (m *metrics) hit(provider string) {
	if p, ok := m.providers[provider]; ok {
		p.hits.Add(1)
	}
}
