// Package telemetry builds verifierd's OpenTelemetry providers: a meter
// provider whose readings are served as Prometheus text on /_tp/metrics, and,
// when the standard OTEL_EXPORTER_OTLP_* variables are set, OTLP/HTTP export
// of traces and metrics. Components receive the providers through their
// configs; nothing here touches the OTel globals.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Providers are the telemetry of one process.
type Providers struct {
	Meter   metric.MeterProvider
	Tracer  trace.TracerProvider
	Metrics http.Handler // Prometheus text exposition

	shutdown []func(context.Context) error
}

// Config says who is reporting.
type Config struct {
	ServiceName string // e.g. "verifierd"
	NodeID      string
}

// New builds the providers. OTLP export is on when OTEL_EXPORTER_OTLP_ENDPOINT
// (or its traces/metrics variants) is set; the exporters read the rest of the
// standard variables themselves.
func New(ctx context.Context, cfg Config) (*Providers, error) {
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName(cfg.ServiceName),
		semconv.ServiceInstanceID(cfg.NodeID),
	))
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	reg := promclient.NewRegistry()
	prom, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(prom)}
	p := &Providers{Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}

	if otlpSet("METRICS") {
		exp, err := otlpmetrichttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: otlp metric exporter: %w", err)
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
	}
	mp := sdkmetric.NewMeterProvider(mopts...)
	p.Meter = mp
	p.shutdown = append(p.shutdown, mp.Shutdown)

	p.Tracer = tracenoop.NewTracerProvider()
	if otlpSet("TRACES") {
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: otlp trace exporter: %w", err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithBatcher(exp))
		p.Tracer = tp
		p.shutdown = append(p.shutdown, tp.Shutdown)
	}
	return p, nil
}

func otlpSet(signal string) bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" ||
		os.Getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") != ""
}

// Shutdown flushes and stops every provider.
func (p *Providers) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range p.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}
