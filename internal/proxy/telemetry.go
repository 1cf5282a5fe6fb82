package proxy

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/tpcluster/tpcluster/internal/core"
)

const instrumentation = "github.com/tpcluster/tpcluster/internal/proxy"

// telemetry holds the instruments of decisions. Attributes stay low
// cardinality (outcome, reason_code, route_id); jti, subject, path and
// request id belong to spans and audit events (STYLE §8).
type telemetry struct {
	tracer    trace.Tracer
	decisions metric.Int64Counter
	latency   metric.Float64Histogram
}

func newTelemetry(tp trace.TracerProvider, mp metric.MeterProvider, mem *bodyMemory) (*telemetry, error) {
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	m := mp.Meter(instrumentation)
	t := &telemetry{tracer: tp.Tracer(instrumentation)}
	var err error
	if t.decisions, err = m.Int64Counter("tpcluster.decisions",
		metric.WithDescription("Decisions by outcome, reason code and route."),
		metric.WithUnit("{decision}")); err != nil {
		return nil, err
	}
	// The decision's own time: from the request read (headers and body)
	// to the upstream send in proxy mode, or to the answer written in
	// check mode and for every deny. Pipeline, ledger consume and audit
	// record are in it; the client's upload and the upstream's answer are
	// not.
	if t.latency, err = m.Float64Histogram("tpcluster.decision.duration",
		metric.WithDescription("Time a node spends deciding a request: from the request read to the upstream send (proxy mode) or to the answer (check mode, denies); ledger and audit record included."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)); err != nil {
		return nil, err
	}
	if _, err = m.Int64ObservableGauge("tpcluster.request_body.memory",
		metric.WithDescription("Request body bytes buffered now, against --max-body-memory-bytes."),
		metric.WithUnit("By"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(mem.used.Load())
			return nil
		})); err != nil {
		return nil, err
	}
	return t, nil
}

func decisionAttrs(d *core.Decision) metric.MeasurementOption {
	return metric.WithAttributes(
		attribute.String("outcome", d.Outcome.String()),
		attribute.String("reason_code", string(d.Reason)),
		attribute.String("route_id", d.RouteID),
	)
}

func (t *telemetry) count(ctx context.Context, d *core.Decision) {
	t.decisions.Add(ctx, 1, decisionAttrs(d))
}

// duration records the decision's own time, since the request was read
// (tpcluster.decision.duration).
func (t *telemetry) duration(ctx context.Context, d *core.Decision, read time.Time) {
	t.latency.Record(ctx, time.Since(read).Seconds(), decisionAttrs(d))
}

// observe records the decision on its span and counts it. The span
// carries no secrets: no passport, proof, body or key.
func (t *telemetry) observe(ctx context.Context, span trace.Span, d *core.Decision) {
	t.decisions.Add(ctx, 1, decisionAttrs(d))
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("tpcluster.outcome", d.Outcome.String()),
			attribute.String("tpcluster.reason_code", string(d.Reason)),
			attribute.String("tpcluster.route_id", d.RouteID),
		)
		if !d.Allowed() {
			span.SetStatus(codes.Error, string(d.Reason))
		}
	}
}
