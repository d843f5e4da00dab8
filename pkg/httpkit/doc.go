// Package httpkit is the small HTTP layer every shopfloor service shares on
// top of go-kit's HTTP transport. It is not a framework: routing is
// net/http's ServeMux, endpoints are go-kit endpoints, and each piece here
// can be used alone.
//
// Contract:
//   - Errors become HTTP statuses in one place, ErrorEncoder. A *Problem
//     (RFC 9457, application/problem+json) or a ProblemProvider is written
//     as is; context.DeadlineExceeded is 504 "timeout"; any other error is
//     500 "internal" with the fixed detail "internal error" and is logged,
//     never shown to the client. Problem types are ProblemBase + class, and
//     the class is the stable thing a client switches on.
//   - DecodeJSON is strict: only application/json, one JSON value, no
//     unknown fields, a size limit (DefaultMaxBodyBytes, 1 MiB, unless
//     told otherwise). Every client mistake is a 4xx *Problem a person can
//     act on, and the destination is not modified on error.
//   - Bodies are limited twice on purpose: LimitBody caps every request,
//     DecodeJSON can cap a route tighter.
//   - /healthz (liveness) never depends on other systems; /readyz
//     (readiness) runs every check concurrently with a 2s timeout each and
//     fails as soon as shutdown starts.
//   - Serve shuts down gracefully when its context ends: readiness fails,
//     the server keeps serving for DrainDelay, then stops accepting
//     connections and lets in-flight requests finish (up to
//     ShutdownTimeout). Request contexts are not cancelled by the shutdown
//     signal. Returning nil means no request was cut off.
//   - Unknown routes and wrong methods answer 404 / 405 problems, the
//     latter with an Allow header.
//   - A service the edge reaches serves two muxes on two listeners (ADR
//     0023): NewPublicMux (the API, /healthz, a /readyz without details;
//     /metrics and /v1/admin/ are 404 there whatever is mounted) and
//     NewAdminMux (/healthz, /readyz with each check's error, /metrics and
//     the admin API under AdminPrefix). NewMux is the admin kind, for
//     processes that only operators reach.
//   - At the edge, the caller is not trusted with our traces: TraceEdge
//     starts a new trace per request, linked to the caller's span, and
//     drops incoming baggage (Trace, for internal listeners, continues the
//     caller's). NoSniff marks every answer X-Content-Type-Options:
//     nosniff.
//
// Not provided: authentication, CORS, rate limiting, response caching.
// Those belong to the edge or to go-kit endpoint middleware.
//
// Wiring, in a service's run function:
//
//	health := httpkit.NewHealth()
//	health.AddCheck("postgres", pool.Ping)
//
//	mux := httpkit.NewMux(health, metricsHandler)
//	mux.Handle("POST /v1/orders", httpkit.NewKitServer(
//		makeCreateOrderEndpoint(svc),
//		func(_ context.Context, r *http.Request) (any, error) {
//			var req createOrderRequest
//			if err := httpkit.DecodeJSON(r, &req, 64<<10); err != nil {
//				return nil, err // already a 4xx *Problem
//			}
//			return req, nil
//		},
//		httpkit.EncodeJSON, logger))
//
//	handler := httpkit.Chain(mux,
//		httpkit.TraceEdge(tracerProvider, propagator, meterProvider), // Trace on an internal listener
//		httpkit.NoSniff(),
//		httpkit.AccessLog(logger),
//		httpkit.Recover(logger),
//		httpkit.LimitBody(httpkit.DefaultMaxBodyBytes),
//	)
//	cfg := httpkit.ServerConfig{Addr: ":8080", DrainDelay: 5 * time.Second}
//	return httpkit.Serve(ctx, cfg.WithDefaults(), nil, handler, health, logger)
package httpkit
