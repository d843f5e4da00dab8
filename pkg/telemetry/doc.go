// Package telemetry gives a service its OpenTelemetry tracer and meter
// providers, its JSON logger, and trace propagation through message
// metadata, so that one trace spans HTTP → outbox → stream → consumer →
// queue → worker.
//
// Contract:
//   - New builds everything from a Config; it touches no OpenTelemetry
//     globals (otel.SetTracerProvider and friends are never called). Pass
//     the providers to what needs them (httpkit.Trace, the watermill
//     helpers here), so two services in one test binary never share state.
//   - Traces: always sampled at the parent's decision (ParentBased,
//     AlwaysOn at the root). Exported over OTLP/HTTP when OTLPEndpoint is
//     set (OTEL_EXPORTER_OTLP_ENDPOINT), batched; to Config.SpanExporter
//     synchronously when a test sets one; otherwise recorded nowhere, but
//     trace ids still flow (logs, message metadata).
//   - Metrics: a Prometheus registry of the service's own (Registry),
//     served by MetricsHandler at /metrics, holding the OTel meter
//     provider's instruments plus Go and process collectors; building
//     blocks that use the Prometheus client register on Registry too. OTLP
//     export of the same instruments when OTLPEndpoint is set.
//   - Logs: log/slog JSON with service, version and instance on every line;
//     a record logged with a context that carries a span gets trace_id and
//     span_id (use logger.InfoContext(ctx, ...)).
//   - Propagation: W3C traceparent/tracestate and baggage. Inject writes
//     them into a map[string]string (watermill message.Metadata, outbox
//     headers, NATS headers); Extract reads them back. PublisherDecorator
//     and ConsumerMiddleware do this for watermill, with producer and
//     consumer spans. Messages carry the trace only if their context was
//     set (msg.SetContext(ctx)) before publishing.
//   - Resource attributes: service.name, service.version,
//     service.instance.id (default: the host name).
//
// Wiring, in a service's run function:
//
//	tel, err := telemetry.New(ctx, telemetry.Config{ServiceName: "orders",
//		ServiceVersion: version, OTLPEndpoint: cfg.OTLPEndpoint}, stdout)
//	if err != nil { return err }
//	defer tel.Shutdown(context.WithoutCancel(ctx))
//	mux := httpkit.NewMux(health, tel.MetricsHandler())
//	handler := httpkit.Chain(mux, httpkit.Trace(tel.TracerProvider, tel.Propagator, tel.MeterProvider), ...)
//	router.AddMiddleware(tel.ConsumerMiddleware("order-placed"))
package telemetry
