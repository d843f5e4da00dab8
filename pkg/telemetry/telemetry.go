package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// Config describes a service's telemetry.
type Config struct {
	// ServiceName is service.name, e.g. "orders". Required.
	ServiceName string
	// ServiceVersion is service.version. Default "dev".
	ServiceVersion string
	// InstanceID is service.instance.id. Default: the host name.
	InstanceID string
	// OTLPEndpoint turns on OTLP/HTTP export of traces and metrics, e.g.
	// "http://otel-lgtm:4318" (OTEL_EXPORTER_OTLP_ENDPOINT). Empty: none.
	OTLPEndpoint string
	// LogLevel is the lowest level logged. Default Info.
	LogLevel slog.Level
	// SpanExporter, when set, receives every span synchronously (tests use
	// tracetest.NewInMemoryExporter).
	SpanExporter sdktrace.SpanExporter
}

// Telemetry is a service's providers and logger.
type Telemetry struct {
	// Logger writes JSON with trace ids; see NewLogHandler.
	Logger *slog.Logger
	// TracerProvider and MeterProvider are the service's own.
	TracerProvider *sdktrace.TracerProvider
	MeterProvider  *sdkmetric.MeterProvider
	// Registry is served at /metrics.
	Registry *prometheus.Registry
	// Propagator is W3C trace context + baggage.
	Propagator propagation.TextMapPropagator
}

// New builds the providers and the logger. Logs go to logOut.
func New(ctx context.Context, cfg Config, logOut io.Writer) (*Telemetry, error) {
	if cfg.ServiceName == "" {
		return nil, errors.New("telemetry: ServiceName is required")
	}
	if cfg.ServiceVersion == "" {
		cfg.ServiceVersion = "dev"
	}
	if cfg.InstanceID == "" {
		host, err := os.Hostname()
		if err != nil {
			host = "unknown"
		}
		cfg.InstanceID = host
	}
	res := resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(cfg.ServiceName),
		semconv.ServiceVersion(cfg.ServiceVersion),
		semconv.ServiceInstanceID(cfg.InstanceID),
	)

	topts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
	}
	if cfg.SpanExporter != nil {
		topts = append(topts, sdktrace.WithSyncer(cfg.SpanExporter))
	}
	if cfg.OTLPEndpoint != "" {
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(cfg.OTLPEndpoint+"/v1/traces"))
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP trace exporter for %s: %w", cfg.OTLPEndpoint, err)
		}
		topts = append(topts, sdktrace.WithBatcher(exp))
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	promExp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExp)}
	if cfg.OTLPEndpoint != "" {
		exp, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(cfg.OTLPEndpoint+"/v1/metrics"))
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP metric exporter for %s: %w", cfg.OTLPEndpoint, err)
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
	}

	handler := slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: cfg.LogLevel})
	logger := slog.New(NewLogHandler(handler)).With(
		"service", cfg.ServiceName, "version", cfg.ServiceVersion, "instance", cfg.InstanceID)

	return &Telemetry{
		Logger:         logger,
		TracerProvider: sdktrace.NewTracerProvider(topts...),
		MeterProvider:  sdkmetric.NewMeterProvider(mopts...),
		Registry:       reg,
		Propagator:     propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}, nil
}

// MetricsHandler serves Registry in the Prometheus text format.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(t.Registry, promhttp.HandlerOpts{Registry: t.Registry})
}

// Tracer returns a tracer of the service's provider.
func (t *Telemetry) Tracer(name string) trace.Tracer { return t.TracerProvider.Tracer(name) }

// Meter returns a meter of the service's provider.
func (t *Telemetry) Meter(name string) metric.Meter { return t.MeterProvider.Meter(name) }

// Shutdown flushes and stops the providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	return errors.Join(t.TracerProvider.Shutdown(ctx), t.MeterProvider.Shutdown(ctx))
}
