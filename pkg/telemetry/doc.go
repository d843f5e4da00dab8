// Package telemetry gives a service its OpenTelemetry tracer and meter
// providers, its Prometheus registry, its JSON logger, and trace
// propagation through message metadata, so that one trace spans
// HTTP → outbox → stream → consumer → queue → worker.
//
// # Contract
//
//   - No globals. New touches no OpenTelemetry global (otel.SetTracerProvider,
//     otel.SetMeterProvider, otel.SetTextMapPropagator and
//     otel.SetErrorHandler are never called) and no Prometheus global
//     (prometheus.DefaultRegisterer is not used). Pass the providers to what
//     needs them (httpkit.Trace, the watermill helpers here), so two
//     services in one test binary never share state. Export errors still go
//     to OpenTelemetry's global error handler, which by default logs them
//     to stderr; this package leaves it alone.
//   - Traces are sampled at the parent's decision, and always at the root
//     (ParentBased(AlwaysSample)). They are exported over OTLP/HTTP, batched,
//     when Config.OTLPEndpoint is set; to Config.SpanExporter synchronously
//     when a test sets one; otherwise recorded nowhere, but trace ids still
//     flow through logs and message metadata.
//   - Metrics: Telemetry.Registry is the service's own Prometheus registry,
//     served by MetricsHandler at /metrics. It holds the meter provider's
//     instruments (names translated to Prometheus style: "orders.placed"
//     counter → orders_placed_total, units as suffixes), a target_info
//     series with the resource attributes, and the Go runtime and process
//     collectors. Building blocks that use the Prometheus client register
//     on Registry too. With an OTLPEndpoint the same instruments are also
//     pushed over OTLP periodically (every 60s by default) and at Shutdown.
//   - Logs: log/slog JSON, one object per line, with service, version and
//     instance on every line. A record logged with a context that carries a
//     valid span context (logger.InfoContext(ctx, ...)) gets trace_id and
//     span_id at the top level; one logged without gets neither.
//   - Propagated: W3C Trace Context (traceparent, tracestate) and W3C
//     Baggage (baggage), nothing else. Inject writes them into a
//     map[string]string (watermill message.Metadata, outbox headers, NATS
//     headers); Extract reads them back and ignores what it cannot parse.
//     PublisherDecorator and ConsumerMiddleware do this for watermill with
//     a producer span ("publish <topic>") and a consumer span
//     ("<handler> process") that is the producer span's child. A message
//     carries its creator's trace only if its context was set
//     (msg.SetContext(ctx)) before publishing; otherwise it starts a trace.
//   - Resource attributes: service.name, service.version (default "dev"),
//     service.instance.id (default: the host name) and telemetry.sdk.*.
//     This package reads no environment variable (the caller reads
//     OTEL_EXPORTER_OTLP_ENDPOINT into Config); the OpenTelemetry SDK still
//     honours its own tuning variables such as OTEL_EXPORTER_OTLP_HEADERS,
//     OTEL_BSP_* and OTEL_METRIC_EXPORT_INTERVAL.
//   - Shutdown flushes and stops both providers once; call it on the way
//     out with a fresh, bounded context.
//
// # Wiring
//
// In a service's run function:
//
//	tel, err := telemetry.New(ctx, telemetry.Config{
//		ServiceName:    "orders",
//		ServiceVersion: cfg.Version,
//		OTLPEndpoint:   cfg.OTLPEndpoint, // OTEL_EXPORTER_OTLP_ENDPOINT, may be empty
//		LogLevel:       cfg.LogLevel,
//	}, stdout)
//	if err != nil {
//		return fmt.Errorf("telemetry: %w", err)
//	}
//	defer func() {
//		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
//		defer cancel()
//		_ = tel.Shutdown(sctx)
//	}()
//	log := tel.Logger
//	mux.Handle("GET /metrics", tel.MetricsHandler())
//	handler := httpkit.Trace(tel.TracerProvider, tel.Propagator, tel.MeterProvider)(mux)
//	pub := tel.PublisherDecorator(natsPublisher)
//	router.AddMiddleware(tel.ConsumerMiddleware("order-placed"), middleware.Recoverer)
//
// and, when producing a message inside a request or handler:
//
//	msg := message.NewMessage(id, payload)
//	msg.SetContext(ctx) // without this the trace stops here
//	err := pub.Publish(topic, msg)
package telemetry
