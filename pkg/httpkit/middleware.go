package httpkit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Middleware wraps an http.Handler with a cross-cutting concern.
//
// The middlewares of this package pass the *http.Request they receive on
// unchanged (LimitBody replaces its Body in place), so that the route
// pattern the ServeMux records in r.Pattern is visible to AccessLog and
// Trace after the handler returns. A middleware placed between them and
// the mux that calls r.WithContext hides the pattern from them.
type Middleware func(http.Handler) http.Handler

// Chain wraps h in mws; the first listed is the outermost, the first to
// see a request. Nil middlewares are skipped. The usual order is
//
//	Chain(mux, Trace(...), AccessLog(log), Recover(log), LimitBody(DefaultMaxBodyBytes))
//
// so that the access log line carries the trace id and the status written
// by Recover.
func Chain(h http.Handler, mws ...Middleware) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		if mws[i] != nil {
			h = mws[i](h)
		}
	}
	return h
}

// Recover turns a panic in a handler into a 500 "internal" problem and
// logs the panic value and stack at Error. If the handler had already
// started the response, the connection is aborted instead (re-panicking
// with http.ErrAbortHandler) so that the client does not take a truncated
// response for a complete one. A panic with http.ErrAbortHandler itself is
// passed on untouched. A nil logger discards the log lines.
func Recover(logger *slog.Logger) Middleware {
	logger = orDiscard(logger)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := &recorder{ResponseWriter: w}
			defer func() {
				v := recover()
				if v == nil {
					return
				}
				if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					panic(v)
				}
				logger.LogAttrs(r.Context(), slog.LevelError, "handler panicked",
					slog.String("method", r.Method),
					slog.String("route", r.Pattern),
					slog.String("panic", fmt.Sprint(v)),
					slog.String("stack", string(debug.Stack())))
				if rec.wroteHeader {
					panic(http.ErrAbortHandler)
				}
				WriteProblem(rec, internalProblem())
			}()
			next.ServeHTTP(rec, r)
		})
	}
}

// AccessLog logs one line per request at Info (Warn for 5xx) with the
// method, route (r.Pattern as set by the ServeMux, "" when the request
// never reached it), path, status, response bytes and duration. It logs
// with r.Context(), so a trace-aware slog handler adds the trace id when
// Trace runs outside AccessLog. A nil logger discards the log lines.
func AccessLog(logger *slog.Logger) Middleware {
	logger = orDiscard(logger)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rec := &recorder{ResponseWriter: w}
			defer func() {
				// Runs during a panic too (then with the status so far);
				// the panic goes on to the server.
				level := slog.LevelInfo
				status := rec.Status()
				if status >= 500 {
					level = slog.LevelWarn
				}
				logger.LogAttrs(r.Context(), level, "http request",
					slog.String("method", r.Method),
					slog.String("route", r.Pattern),
					slog.String("path", r.URL.Path),
					slog.Int("status", status),
					slog.Int64("bytes", rec.bytes),
					slog.Duration("duration", time.Since(start)))
			}()
			next.ServeHTTP(rec, r)
		})
	}
}

// LimitBody caps every request body at maxBytes (DefaultMaxBodyBytes when
// maxBytes <= 0) with http.MaxBytesReader: reading past the cap fails with
// a *http.MaxBytesError, which DecodeJSON and ErrorEncoder answer with 413
// "body-too-large", and the connection is closed after the response.
func LimitBody(maxBytes int64) Middleware {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBodyBytes
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Body != nil && r.Body != http.NoBody {
				r.Body = http.MaxBytesReader(w, r.Body, maxBytes)
			}
			next.ServeHTTP(w, r)
		})
	}
}

// Trace instruments requests with OpenTelemetry through otelhttp: it
// extracts the caller's trace context with prop, starts a server span
// with tp, and records the http.server.request.duration (and body size)
// metrics with mp. The span is named after the route pattern the
// ServeMux matched ("POST /v1/notes"), or after the method alone when no
// route matched, so span names never contain ids. Put Trace outermost so
// that everything else runs inside the span. A nil provider or propagator
// falls back to the otel global one (otelhttp's behaviour); pass them
// explicitly, globals are not used in this repository.
//
// Trace trusts the caller's trace context and baggage: use it where only
// the system's own processes call (the admin listener). At the edge use
// TraceEdge.
func Trace(tp trace.TracerProvider, prop propagation.TextMapPropagator, mp metric.MeterProvider) Middleware {
	return traceWith(tp, prop, mp)
}

// TraceEdge is Trace for a listener that callers outside the system reach
// (the public listener, ADR 0035). A traceparent from outside does not
// make the server span its child: every request starts a new trace, and
// the caller's span, when it sent a valid one, is attached as a span link
// (so a trace viewer still leads from one to the other, but an outsider
// can neither join our traces, choose our trace ids, nor force sampling).
// Baggage from outside is dropped: the handler never sees it in its
// context and nothing propagates it further. Everything else is as Trace.
func TraceEdge(tp trace.TracerProvider, prop propagation.TextMapPropagator, mp metric.MeterProvider) Middleware {
	if prop == nil {
		prop = otel.GetTextMapPropagator()
	}
	return traceWith(tp, noBaggage{prop}, mp,
		otelhttp.WithPublicEndpointFn(func(*http.Request) bool { return true }))
}

func traceWith(tp trace.TracerProvider, prop propagation.TextMapPropagator, mp metric.MeterProvider, extra ...otelhttp.Option) Middleware {
	opts := append([]otelhttp.Option{
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(prop),
		otelhttp.WithMeterProvider(mp),
		otelhttp.WithSpanNameFormatter(spanName),
	}, extra...)
	return func(next http.Handler) http.Handler {
		return otelhttp.NewHandler(next, "http.server", opts...)
	}
}

// noBaggage extracts with its propagator but keeps the context's own
// baggage (none, at a server's entry) instead of the carrier's.
type noBaggage struct{ propagation.TextMapPropagator }

func (p noBaggage) Extract(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	return baggage.ContextWithBaggage(p.TextMapPropagator.Extract(ctx, c), baggage.FromContext(ctx))
}

// NoSniff sets X-Content-Type-Options: nosniff on every answer, before the
// handler runs, so that errors, 404s and panics recovered inside carry it
// too: a browser must take a response for the Content-Type it declares
// (a JSON body with HTML in it is never rendered as a page). Answers
// net/http writes itself without reaching a handler (a malformed request
// line) do not pass through it.
func NoSniff() Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Content-Type-Options", "nosniff")
			next.ServeHTTP(w, r)
		})
	}
}

// spanName is the route pattern with its method ("GET /v1/notes/{id}"),
// or the method alone before routing or when nothing matched.
func spanName(_ string, r *http.Request) string {
	switch {
	case r.Pattern == "" || r.Pattern == "/":
		return r.Method
	case strings.Contains(r.Pattern, " "):
		return r.Pattern
	default:
		return r.Method + " " + r.Pattern
	}
}

// recorder remembers the status and size of a response. Unwrap lets
// http.ResponseController reach the underlying writer's Flush, Hijack and
// deadlines.
type recorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	bytes       int64
}

func (rw *recorder) WriteHeader(code int) {
	if !rw.wroteHeader && code >= 200 {
		rw.status, rw.wroteHeader = code, true
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(b []byte) (int, error) {
	if !rw.wroteHeader {
		rw.status, rw.wroteHeader = http.StatusOK, true
	}
	n, err := rw.ResponseWriter.Write(b)
	rw.bytes += int64(n)
	return n, err
}

// Flush makes the recorder an http.Flusher, as the writers it wraps are.
func (rw *recorder) Flush() {
	if !rw.wroteHeader {
		rw.status, rw.wroteHeader = http.StatusOK, true
	}
	_ = http.NewResponseController(rw.ResponseWriter).Flush()
}

func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

// Status is the status written so far; 200 when the handler wrote nothing
// (net/http then sends 200).
func (rw *recorder) Status() int {
	if !rw.wroteHeader {
		return http.StatusOK
	}
	return rw.status
}
