package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// DefaultServiceVersion is service.version when Config.ServiceVersion is
// empty.
const DefaultServiceVersion = "dev"

// ErrInvalidConfig is wrapped by every error New returns for a Config it
// refuses (errors.Is(err, ErrInvalidConfig)); the message says which field
// is wrong and why.
var ErrInvalidConfig = errors.New("invalid telemetry config")

// Config describes a service's telemetry. The zero value is invalid:
// ServiceName is required. Config is read from the environment by the
// service's run function, never by this package.
type Config struct {
	// ServiceName is the resource attribute service.name, e.g. "orders",
	// and the "service" field of every log line. Required.
	ServiceName string
	// ServiceVersion is service.version and the "version" log field.
	// Default DefaultServiceVersion ("dev").
	ServiceVersion string
	// InstanceID is service.instance.id and the "instance" log field; it
	// tells replicas apart. Default: the host name (a container's host name
	// is its id), or "unknown" if the host name cannot be read.
	InstanceID string
	// OTLPEndpoint is the base URL of an OTLP/HTTP collector, e.g.
	// "http://otel-lgtm:4318" (the caller reads it from
	// OTEL_EXPORTER_OTLP_ENDPOINT). Traces go to <endpoint>/v1/traces
	// (batched) and metrics to <endpoint>/v1/metrics (every 60s by
	// default, and at Shutdown). The scheme must be http or https; http
	// means no TLS.
	// Empty: nothing is exported over OTLP, and New opens no connection
	// and starts no goroutine.
	OTLPEndpoint string
	// LogLevel is the lowest level Logger writes. The zero value is
	// slog.LevelInfo.
	LogLevel slog.Level
	// SpanExporter, when set, receives every ended span synchronously,
	// before span.End returns (a SimpleSpanProcessor), in addition to OTLP
	// export. Meant for tests (tracetest.NewInMemoryExporter); a slow
	// exporter here slows every span. Shutdown shuts it down.
	SpanExporter sdktrace.SpanExporter
}

// validate reports the first problem with c, wrapping ErrInvalidConfig.
func (c Config) validate() error {
	if c.ServiceName == "" {
		return fmt.Errorf(`%w: ServiceName is required (the service.name resource attribute, e.g. "orders")`, ErrInvalidConfig)
	}
	if c.OTLPEndpoint != "" {
		u, err := url.Parse(c.OTLPEndpoint)
		if err != nil {
			return fmt.Errorf("%w: OTLPEndpoint %q is not a URL: %w", ErrInvalidConfig, c.OTLPEndpoint, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf(`%w: OTLPEndpoint %q must be an http or https base URL with a host, e.g. "http://otel-lgtm:4318"`, ErrInvalidConfig, c.OTLPEndpoint)
		}
	}
	return nil
}

// Telemetry is one service's logger, providers and propagator. Build it
// with New; the zero value is unusable. Its fields are safe for concurrent
// use and may be handed to anything that takes the OpenTelemetry or
// Prometheus interfaces (e.g. httpkit.Trace, a prometheus.Registerer).
type Telemetry struct {
	// Logger writes one JSON object per line to New's writer, at
	// Config.LogLevel and above, with "service", "version" and "instance"
	// on every line and trace_id/span_id when logged with a context that
	// carries a span (see NewLogHandler).
	Logger *slog.Logger
	// TracerProvider samples every root span and follows the parent's
	// decision otherwise (ParentBased(AlwaysSample)).
	TracerProvider *sdktrace.TracerProvider
	// MeterProvider's instruments are served by MetricsHandler and, with
	// an OTLPEndpoint, pushed over OTLP.
	MeterProvider *sdkmetric.MeterProvider
	// Registry is the service's own Prometheus registry (never
	// prometheus.DefaultRegisterer). It holds the OTel Prometheus exporter,
	// the Go runtime and process collectors; building blocks that use the
	// Prometheus client register their collectors here.
	Registry *prometheus.Registry
	// Propagator reads and writes W3C traceparent/tracestate and W3C
	// baggage.
	Propagator propagation.TextMapPropagator

	shutdownOnce sync.Once
	shutdownErr  error
}

// New validates cfg and builds a Telemetry whose logs go to logOut. It sets
// no OpenTelemetry or Prometheus globals. ctx bounds only the construction
// of the OTLP exporters. With an empty OTLPEndpoint nothing is started that
// needs stopping, but callers should still defer Shutdown.
//
// Errors: a Config error wraps ErrInvalidConfig; a nil logOut is refused.
func New(ctx context.Context, cfg Config, logOut io.Writer) (*Telemetry, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	if logOut == nil {
		return nil, errors.New("telemetry: logOut is nil (pass io.Discard to drop logs)")
	}
	cfg = cfg.withDefaults()
	res, err := newResource(ctx, cfg)
	if err != nil {
		return nil, err
	}
	reg, promExp, err := newRegistry()
	if err != nil {
		return nil, err
	}
	topts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExp)}
	if cfg.SpanExporter != nil {
		topts = append(topts, sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(cfg.SpanExporter)))
	}
	if cfg.OTLPEndpoint != "" {
		traces, metrics, err := otlpExporters(ctx, cfg.OTLPEndpoint)
		if err != nil {
			return nil, err
		}
		topts, mopts = append(topts, traces), append(mopts, metrics)
	}
	return &Telemetry{
		Logger:         newLogger(cfg, logOut),
		TracerProvider: sdktrace.NewTracerProvider(topts...),
		MeterProvider:  sdkmetric.NewMeterProvider(mopts...),
		Registry:       reg,
		Propagator:     propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}, nil
}

// withDefaults fills ServiceVersion (DefaultServiceVersion) and
// InstanceID (the host name, or "unknown").
func (c Config) withDefaults() Config {
	if c.ServiceVersion == "" {
		c.ServiceVersion = DefaultServiceVersion
	}
	if c.InstanceID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "unknown"
		}
		c.InstanceID = host
	}
	return c
}

// newResource describes the service instance every span and metric
// belongs to.
func newResource(ctx context.Context, cfg Config) (*resource.Resource, error) {
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithTelemetrySDK(),
		resource.WithAttributes(
			semconv.ServiceName(cfg.ServiceName),
			semconv.ServiceVersion(cfg.ServiceVersion),
			semconv.ServiceInstanceID(cfg.InstanceID),
		))
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return res, nil
}

// newRegistry returns the service's Prometheus registry, with the Go
// runtime and process collectors, and the OTel exporter that serves the
// MeterProvider's instruments from it.
func newRegistry() (*prometheus.Registry, *otelprom.Exporter, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, nil, fmt.Errorf("telemetry: register Go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, nil, fmt.Errorf("telemetry: register process collector: %w", err)
	}
	// The default translation strategy (UnderscoreEscapingWithSuffixes)
	// turns "orders.placed" into orders_placed_total; scope labels are left
	// out because every instrument of a service shares them.
	promExp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	return reg, promExp, nil
}

// otlpExporters builds the OTLP/HTTP exporters of traces (batched) and
// metrics (pushed periodically) to endpoint.
func otlpExporters(ctx context.Context, endpoint string) (sdktrace.TracerProviderOption, sdkmetric.Option, error) {
	traceURL, metricURL, err := otlpURLs(endpoint)
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry: %w", err)
	}
	traceExp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(traceURL))
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry: OTLP trace exporter for %s: %w", traceURL, err)
	}
	metricExp, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(metricURL))
	if err != nil {
		return nil, nil, errors.Join(
			fmt.Errorf("telemetry: OTLP metric exporter for %s: %w", metricURL, err),
			traceExp.Shutdown(ctx))
	}
	return sdktrace.WithBatcher(traceExp), sdkmetric.WithReader(sdkmetric.NewPeriodicReader(metricExp)), nil
}

// newLogger logs JSON to out at cfg.LogLevel, with the trace context
// (NewLogHandler) and the service's name, version and instance.
func newLogger(cfg Config, out io.Writer) *slog.Logger {
	handler := slog.NewJSONHandler(out, &slog.HandlerOptions{Level: cfg.LogLevel})
	return slog.New(NewLogHandler(handler)).With(
		slog.String("service", cfg.ServiceName),
		slog.String("version", cfg.ServiceVersion),
		slog.String("instance", cfg.InstanceID))
}

// otlpURLs appends the OTLP/HTTP signal paths to the base endpoint, as
// OTEL_EXPORTER_OTLP_ENDPOINT is specified: "http://c:4318/otlp" gives
// "http://c:4318/otlp/v1/traces".
func otlpURLs(endpoint string) (traces, metrics string, err error) {
	if traces, err = url.JoinPath(endpoint, "v1", "traces"); err != nil {
		return "", "", fmt.Errorf("OTLP trace URL from %q: %w", endpoint, err)
	}
	if metrics, err = url.JoinPath(endpoint, "v1", "metrics"); err != nil {
		return "", "", fmt.Errorf("OTLP metric URL from %q: %w", endpoint, err)
	}
	return traces, metrics, nil
}

// MetricsHandler serves Registry in the Prometheus exposition format
// (text, or OpenMetrics/protobuf when the scraper asks), for /metrics.
// Scrape errors are counted in promhttp_metric_handler_errors_total on
// Registry and answered with 500. Each call returns a new handler; calling
// it more than once is fine.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(t.Registry, promhttp.HandlerOpts{Registry: t.Registry})
}

// Tracer returns the tracer called name (by convention the instrumenting
// package's import path) from TracerProvider. After Shutdown its spans are
// no longer exported.
func (t *Telemetry) Tracer(name string) trace.Tracer { return t.TracerProvider.Tracer(name) }

// Meter returns the meter called name (by convention the instrumenting
// package's import path) from MeterProvider.
func (t *Telemetry) Meter(name string) metric.Meter { return t.MeterProvider.Meter(name) }

// Shutdown flushes pending spans and metrics (to the OTLP endpoint and
// Config.SpanExporter) and stops both providers, waiting at most until ctx
// ends; pass a context that is not already cancelled, e.g.
// context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second). The
// errors of both providers are joined. Only the first call does the work;
// later calls return its result. The Logger and Registry keep working.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	t.shutdownOnce.Do(func() {
		var errs []error
		if err := t.TracerProvider.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: shut down tracer provider: %w", err))
		}
		if err := t.MeterProvider.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: shut down meter provider: %w", err))
		}
		t.shutdownErr = errors.Join(errs...)
	})
	return t.shutdownErr
}

// HTTPTransport wraps base (http.DefaultTransport when nil) so that every
// outgoing request gets a client span and carries the caller's trace
// context in traceparent, and records the http.client.* metrics: a call
// from one service to another stays in one trace.
func (t *Telemetry) HTTPTransport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return otelhttp.NewTransport(base,
		otelhttp.WithTracerProvider(t.TracerProvider),
		otelhttp.WithMeterProvider(t.MeterProvider),
		otelhttp.WithPropagators(t.Propagator))
}
