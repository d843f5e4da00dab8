package httpkit_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
)

func TestRecoverAnswers500WithoutLeakingThePanic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"panic value", func(http.ResponseWriter, *http.Request) { panic("boom: secret state") }},
		{"panic error", func(http.ResponseWriter, *http.Request) { panic(errors.New("boom: secret state")) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logger, logs := newLogger()
			mux := httpkit.NewMux(httpkit.NewHealth(), nil)
			mux.Handle("POST /v1/boom", tt.handler)
			rec := httptest.NewRecorder()
			httpkit.Chain(mux, httpkit.Recover(logger)).ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/boom", nil))

			if rec.Code != http.StatusInternalServerError {
				t.Fatalf("status %d", rec.Code)
			}
			if p := parseProblem(t, rec.Header(), rec.Body.Bytes()); p.Class() != "internal" || p.Detail != "internal error" {
				t.Fatalf("problem %+v", p)
			}
			if strings.Contains(rec.Body.String(), "secret") {
				t.Errorf("panic value leaked: %s", rec.Body)
			}
			var line map[string]any
			if err := json.Unmarshal([]byte(logs.String()), &line); err != nil {
				t.Fatalf("log %q: %v", logs, err)
			}
			if line["msg"] != "handler panicked" || line["route"] != "POST /v1/boom" ||
				!strings.Contains(line["panic"].(string), "boom") || !strings.Contains(line["stack"].(string), "middleware_test.go") {
				t.Fatalf("log line %v", line)
			}
		})
	}
}

// A panic after the response has started aborts the connection rather
// than appending a problem to a half-written 200.
func TestRecoverAfterWrite(t *testing.T) {
	t.Parallel()
	h := httpkit.Recover(nil)(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "partial")
		panic("late")
	}))
	defer func() {
		v := recover()
		if err, ok := v.(error); !ok || !errors.Is(err, http.ErrAbortHandler) {
			t.Fatalf("recovered %v, want http.ErrAbortHandler", v)
		}
	}()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/", nil))
}

func TestAccessLogRecordsTheRouteAndWarnsOnServerErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		method     string
		path       string
		wantRoute  string
		wantStatus float64
		wantLevel  string
	}{
		{"routed", http.MethodPut, "/v1/items/42", "PUT /v1/items/{id}", 201, "INFO"},
		{"not found", http.MethodGet, "/nope", "/", 404, "INFO"},
		{"server error", http.MethodGet, "/v1/fail", "GET /v1/fail", 500, "WARN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logger, logs := newLogger()
			mux := httpkit.NewMux(httpkit.NewHealth(), nil)
			mux.HandleFunc("PUT /v1/items/{id}", func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusCreated)
				_, _ = io.WriteString(w, "12345")
			})
			mux.HandleFunc("GET /v1/fail", func(w http.ResponseWriter, _ *http.Request) {
				httpkit.WriteProblem(w, httpkit.NewProblem(500, "internal", "internal error"))
			})
			rec := httptest.NewRecorder()
			httpkit.Chain(mux, httpkit.AccessLog(logger)).ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), tt.method, tt.path, nil))

			var line map[string]any
			if err := json.Unmarshal([]byte(logs.String()), &line); err != nil {
				t.Fatalf("want exactly one JSON line, got %q: %v", logs, err)
			}
			if line["level"] != tt.wantLevel || line["method"] != tt.method || line["route"] != tt.wantRoute ||
				line["path"] != tt.path || line["status"] != tt.wantStatus {
				t.Fatalf("log line %v", line)
			}
			if line["bytes"] != float64(rec.Body.Len()) {
				t.Errorf("bytes %v, body was %d", line["bytes"], rec.Body.Len())
			}
			if _, ok := line["duration"]; !ok {
				t.Error("no duration")
			}
		})
	}
}

func TestLimitBodyStopsReadingPastTheLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		limit    int64
		body     string
		wantRead int
		wantErr  bool
	}{
		{"under", 10, "0123456789", 10, false},
		{"over", 10, "0123456789X", 10, true},
		{"default", 0, strings.Repeat("a", httpkit.DefaultMaxBodyBytes), httpkit.DefaultMaxBodyBytes, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var n int
			var readErr error
			h := httpkit.LimitBody(tt.limit)(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				var b []byte
				b, readErr = io.ReadAll(r.Body)
				n = len(b)
			}))
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/", strings.NewReader(tt.body)))
			var mbe *http.MaxBytesError
			if n != tt.wantRead || errors.As(readErr, &mbe) != tt.wantErr {
				t.Fatalf("read %d (err %v), want %d (error %v)", n, readErr, tt.wantRead, tt.wantErr)
			}
		})
	}
}

func TestChainRunsTheFirstMiddlewareOutermostAndSkipsNil(t *testing.T) {
	t.Parallel()
	var order []string
	mw := func(name string) httpkit.Middleware {
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				order = append(order, name)
				next.ServeHTTP(w, r)
			})
		}
	}
	h := httpkit.Chain(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { order = append(order, "handler") }),
		mw("outer"), nil, mw("middle"), mw("inner"))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/", nil))
	if got := strings.Join(order, ","); got != "outer,middle,inner,handler" {
		t.Fatalf("order %s", got)
	}
}

func TestTraceContinuesTheCallersTraceAndRecordsDuration(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(t.Context())
		_ = mp.Shutdown(t.Context())
	})
	prop := propagation.TraceContext{}

	mux := httpkit.NewMux(httpkit.NewHealth(), nil)
	mux.HandleFunc("GET /v1/items/{id}", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "{}") })
	h := httpkit.Chain(mux, httpkit.Trace(tp, prop, mp))

	tests := []struct {
		path     string
		wantName string
	}{
		{"/v1/items/42", "GET /v1/items/{id}"},
		{"/healthz", "GET /healthz"},
		{"/no/such/route", "GET"},
	}
	const parentTrace = "0af7651916cd43dd8448eb211c80319c"
	for _, tt := range tests {
		r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, tt.path, nil)
		r.Header.Set("Traceparent", "00-"+parentTrace+"-b7ad6b7169203331-01")
		h.ServeHTTP(httptest.NewRecorder(), r)
	}

	ended := spans.Ended()
	if len(ended) != len(tests) {
		t.Fatalf("%d spans, want %d", len(ended), len(tests))
	}
	for i, tt := range tests {
		s := ended[i]
		if s.Name() != tt.wantName {
			t.Errorf("span %d name %q, want %q", i, s.Name(), tt.wantName)
		}
		if got := s.SpanContext().TraceID().String(); got != parentTrace {
			t.Errorf("span %d trace %s, want the caller's %s", i, got, parentTrace)
		}
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatalf("collect: %v", err)
	}
	found := false
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "http.server.request.duration" {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("no http.server.request.duration metric in %+v", rm)
	}
}

// At the edge a caller's traceparent does not make our span its child: the
// request gets a new trace with a link to the caller's span, and the
// caller's baggage never reaches the handler. Trace, beside it, continues
// the caller's trace with its baggage (so the test sees a difference).
func TestTraceEdgeStartsANewLinkedTraceAndDropsBaggage(t *testing.T) {
	t.Parallel()
	const (
		callerTrace = "0af7651916cd43dd8448eb211c80319c"
		callerSpan  = "b7ad6b7169203331"
	)
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	for _, tt := range []struct {
		name      string
		trace     func(trace.TracerProvider, propagation.TextMapPropagator, metric.MeterProvider) httpkit.Middleware
		wantChild bool
	}{
		{"edge", httpkit.TraceEdge, false},
		{"internal", httpkit.Trace, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spans := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			var seen baggage.Baggage
			var inHandler trace.SpanContext
			mux := httpkit.NewMux(httpkit.NewHealth(), nil)
			mux.HandleFunc("GET /v1/items", func(_ http.ResponseWriter, r *http.Request) {
				seen, inHandler = baggage.FromContext(r.Context()), trace.SpanContextFromContext(r.Context())
			})
			r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/v1/items", nil)
			r.Header.Set("Traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
			r.Header.Set("Baggage", "tenant=acme,role=admin")
			httpkit.Chain(mux, tt.trace(tp, prop, noop.NewMeterProvider())).ServeHTTP(httptest.NewRecorder(), r)

			ended := spans.Ended()
			if len(ended) != 1 {
				t.Fatalf("%d spans, want 1", len(ended))
			}
			s := ended[0]
			if !inHandler.Equal(s.SpanContext()) {
				t.Fatalf("the handler runs in span %v, want the server span %v", inHandler, s.SpanContext())
			}
			if tt.wantChild {
				if s.SpanContext().TraceID().String() != callerTrace || s.Parent().SpanID().String() != callerSpan {
					t.Fatalf("internal: span in trace %s under %s, want a child of the caller's", s.SpanContext().TraceID(), s.Parent().SpanID())
				}
				if seen.Member("tenant").Value() != "acme" {
					t.Fatalf("internal: baggage %q, want the caller's", seen)
				}
				return
			}
			if s.SpanContext().TraceID().String() == callerTrace || s.Parent().IsValid() {
				t.Fatalf("edge: span in trace %s with parent %v, want a new root", s.SpanContext().TraceID(), s.Parent())
			}
			links := s.Links()
			if len(links) != 1 || links[0].SpanContext.TraceID().String() != callerTrace || links[0].SpanContext.SpanID().String() != callerSpan {
				t.Fatalf("edge: links %+v, want one to the caller's span", links)
			}
			if seen.Len() != 0 {
				t.Fatalf("edge: the handler sees baggage %q", seen)
			}
		})
	}
}

// Every answer carries X-Content-Type-Options: nosniff: a success, a 404
// from the mux, a problem+json from a handler and the 500 of a recovered
// panic.
func TestNoSniffMarksEveryAnswer(t *testing.T) {
	t.Parallel()
	mux := httpkit.NewMux(httpkit.NewHealth(), nil)
	mux.HandleFunc("GET /v1/ok", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `{"ok":true}`) })
	mux.HandleFunc("GET /v1/bad", func(w http.ResponseWriter, _ *http.Request) {
		httpkit.WriteProblem(w, httpkit.NewProblem(http.StatusUnprocessableEntity, "invalid", "no"))
	})
	mux.HandleFunc("GET /v1/panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	h := httpkit.Chain(mux, httpkit.NoSniff(), httpkit.Recover(nil))
	for path, want := range map[string]int{"/v1/ok": 200, "/v1/nothing": 404, "/v1/bad": 422, "/v1/panic": 500} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, path, nil))
		if rec.Code != want || rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: %d %v, want %d with X-Content-Type-Options: nosniff", path, rec.Code, rec.Header(), want)
		}
		if want >= 400 && rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: Content-Type %q, want a problem", path, rec.Header().Get("Content-Type"))
		}
	}
}
