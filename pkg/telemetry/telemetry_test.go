package telemetry_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/shopfloor/shopfloor/pkg/telemetry"
)

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     telemetry.Config
		logOut  io.Writer
		wantCfg bool   // error wraps ErrInvalidConfig
		wantMsg string // error mentions this
	}{
		{name: "empty ServiceName", cfg: telemetry.Config{}, logOut: io.Discard, wantCfg: true, wantMsg: "ServiceName is required"},
		{name: "endpoint without scheme", cfg: telemetry.Config{ServiceName: "s", OTLPEndpoint: "otel-lgtm:4318"}, logOut: io.Discard, wantCfg: true, wantMsg: "OTLPEndpoint"},
		{name: "endpoint with other scheme", cfg: telemetry.Config{ServiceName: "s", OTLPEndpoint: "grpc://otel-lgtm:4317"}, logOut: io.Discard, wantCfg: true, wantMsg: "http or https"},
		{name: "endpoint without host", cfg: telemetry.Config{ServiceName: "s", OTLPEndpoint: "http://"}, logOut: io.Discard, wantCfg: true, wantMsg: "OTLPEndpoint"},
		{name: "endpoint not a URL", cfg: telemetry.Config{ServiceName: "s", OTLPEndpoint: "http://a b:4318"}, logOut: io.Discard, wantCfg: true, wantMsg: "not a URL"},
		{name: "nil log writer", cfg: telemetry.Config{ServiceName: "s"}, logOut: nil, wantMsg: "logOut is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tel, err := telemetry.New(context.Background(), tt.cfg, tt.logOut)
			if err == nil {
				_ = tel.Shutdown(context.Background())
				t.Fatal("New succeeded, want an error")
			}
			if tel != nil {
				t.Errorf("New returned a Telemetry with error %v", err)
			}
			if got := errors.Is(err, telemetry.ErrInvalidConfig); got != tt.wantCfg {
				t.Errorf("errors.Is(err, ErrInvalidConfig) = %v, want %v (err: %v)", got, tt.wantCfg, err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tt.wantMsg)
			}
		})
	}
}

func TestResourceNamesTheServiceVersionAndInstance(t *testing.T) {
	t.Parallel()
	host, err := os.Hostname()
	if err != nil {
		t.Fatalf("hostname: %v", err)
	}
	tests := []struct {
		name string
		cfg  telemetry.Config
		want map[string]string
	}{
		{
			name: "explicit",
			cfg:  telemetry.Config{ServiceName: "orders", ServiceVersion: "2.0.1", InstanceID: "pod-7"},
			want: map[string]string{"service.name": "orders", "service.version": "2.0.1", "service.instance.id": "pod-7", "telemetry.sdk.language": "go"},
		},
		{
			name: "defaults",
			cfg:  telemetry.Config{ServiceName: "orders"},
			want: map[string]string{"service.name": "orders", "service.version": telemetry.DefaultServiceVersion, "service.instance.id": host},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spans := tracetest.NewInMemoryExporter()
			tt.cfg.SpanExporter = spans
			tel, err := telemetry.New(context.Background(), tt.cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tel.Shutdown(context.Background()) }()
			_, span := tel.Tracer("test").Start(context.Background(), "work")
			span.End()
			got := spans.GetSpans()
			if len(got) != 1 {
				t.Fatalf("%d spans exported synchronously, want 1", len(got))
			}
			attrs := map[string]string{}
			for _, kv := range got[0].Resource.Attributes() {
				attrs[string(kv.Key)] = kv.Value.AsString()
			}
			for k, v := range tt.want {
				if attrs[k] != v {
					t.Errorf("resource %s = %q, want %q", k, attrs[k], v)
				}
			}
		})
	}
}

// scrape GETs the metrics handler and returns the body.
func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want the Prometheus text format", ct)
	}
	return rec.Body.String()
}

// sample returns the value of the series whose line starts with series
// (name plus labels, as exposed), and whether there is one.
func sample(body, series string) (string, bool) {
	for line := range strings.SplitSeq(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			return rest, true
		}
	}
	return "", false
}

func TestMetricsHandlerServesMeterInstruments(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c, err := b.tel.Meter("test").Int64Counter("widgets.made")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 3)
	c.Add(context.Background(), 4)
	direct := prometheus.NewCounter(prometheus.CounterOpts{Name: "direct_things_total"})
	b.tel.Registry.MustRegister(direct)
	direct.Inc()

	body := scrape(t, b.tel.MetricsHandler())
	if !strings.Contains(body, "# TYPE widgets_made_total counter") {
		t.Errorf("no counter TYPE line for widgets_made_total in:\n%s", body)
	}
	tests := []struct {
		series, want string
	}{
		{series: "widgets_made_total", want: "7"},
		{series: "direct_things_total", want: "1"},
		{series: `target_info{service_instance_id="i-1",service_name="svc",service_version="1.2.3",telemetry_sdk_language="go",telemetry_sdk_name="opentelemetry",telemetry_sdk_version=`},
	}
	for _, tt := range tests {
		// target_info's SDK version changes with upgrades: match the prefix.
		if strings.HasSuffix(tt.series, "=") {
			if !strings.Contains(body, tt.series) {
				t.Errorf("no %s in:\n%s", tt.series, body)
			}
			continue
		}
		got, ok := sample(body, tt.series)
		if !ok || got != tt.want {
			t.Errorf("%s = %q (found %v), want %s; body:\n%s", tt.series, got, ok, tt.want, body)
		}
	}
	for _, name := range []string{"go_goroutines ", "process_cpu_seconds_total "} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("no %s series: the Go and process collectors are missing", strings.TrimSpace(name))
		}
	}
	if strings.Contains(body, "otel_scope_name") {
		t.Errorf("series carry scope labels, want them left out")
	}
}

// TestOTLPExportOnShutdown: with an OTLPEndpoint, spans and metrics are
// pushed over OTLP/HTTP to <endpoint>/v1/traces and /v1/metrics by the time
// Shutdown returns.
func TestOTLPExportOnShutdown(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	got := map[string]string{} // path → content type
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		got[r.URL.Path] = r.Header.Get("Content-Type")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()

	tel, err := telemetry.New(context.Background(), telemetry.Config{ServiceName: "svc", OTLPEndpoint: srv.URL + "/otlp/"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.Tracer("test").Start(context.Background(), "work")
	span.End()
	c, err := tel.Meter("test").Int64Counter("widgets.made")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 1)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, path := range []string{"/otlp/v1/traces", "/otlp/v1/metrics"} {
		ct, ok := got[path]
		if !ok {
			t.Errorf("nothing posted to %s; got %v", path, got)
		} else if ct != "application/x-protobuf" {
			t.Errorf("%s: Content-Type %q, want application/x-protobuf", path, ct)
		}
	}
}

// failingShutdown is a span exporter whose Shutdown fails.
type failingShutdown struct {
	*tracetest.InMemoryExporter
	err error
}

func (f failingShutdown) Shutdown(context.Context) error { return f.err }

var _ sdktrace.SpanExporter = failingShutdown{}

func TestShutdownReturnsTheExportersErrorOnceAndStopsRecording(t *testing.T) {
	t.Parallel()
	errExporter := errors.New("exporter refused to stop")
	tests := []struct {
		name     string
		exporter sdktrace.SpanExporter
		wantErr  error
	}{
		{name: "clean", exporter: tracetest.NewInMemoryExporter()},
		{name: "exporter error is returned", exporter: failingShutdown{tracetest.NewInMemoryExporter(), errExporter}, wantErr: errExporter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tel, err := telemetry.New(context.Background(), telemetry.Config{ServiceName: "svc", SpanExporter: tt.exporter}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			first := tel.Shutdown(context.Background())
			if !errors.Is(first, tt.wantErr) {
				t.Fatalf("Shutdown = %v, want %v", first, tt.wantErr)
			}
			if second := tel.Shutdown(context.Background()); !errors.Is(second, first) {
				t.Errorf("second Shutdown = %v, want the first call's %v", second, first)
			}
			if _, span := tel.Tracer("test").Start(context.Background(), "late"); span.IsRecording() {
				t.Error("a span started after Shutdown is recording")
			}
		})
	}
}
