package httpkit_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

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
