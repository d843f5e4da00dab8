package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"github.com/shopfloor/shopfloor/pkg/telemetry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// bundle is what most tests need: a Telemetry whose spans are recorded in
// memory and whose logs are kept.
type bundle struct {
	tel   *telemetry.Telemetry
	spans *spanRecorder
	logs  *logBuffer
}

// setup builds a Telemetry for service "svc" 1.2.3 on instance "i-1",
// recording spans and logs; edit changes the Config first. It is shut down
// when the test ends.
func setup(t *testing.T, edit ...func(*telemetry.Config)) bundle {
	t.Helper()
	b := bundle{spans: newSpanRecorder(), logs: &logBuffer{}}
	cfg := telemetry.Config{ServiceName: "svc", ServiceVersion: "1.2.3", InstanceID: "i-1", SpanExporter: b.spans}
	for _, e := range edit {
		e(&cfg)
	}
	tel, err := telemetry.New(context.Background(), cfg, b.logs)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := tel.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	b.tel = tel
	return b
}

// spanRecorder is a tracetest.InMemoryExporter that signals every export,
// so tests wait for a span without sleeping.
type spanRecorder struct {
	*tracetest.InMemoryExporter
	exported chan struct{}
}

func newSpanRecorder() *spanRecorder {
	return &spanRecorder{InMemoryExporter: tracetest.NewInMemoryExporter(), exported: make(chan struct{}, 1)}
}

func (r *spanRecorder) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := r.InMemoryExporter.ExportSpans(ctx, spans)
	select {
	case r.exported <- struct{}{}:
	default:
	}
	return err
}

// waitFor returns the first recorded span that matches, waiting up to 10s
// for it to be exported.
func (r *spanRecorder) waitFor(t *testing.T, what string, match func(tracetest.SpanStub) bool) tracetest.SpanStub {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		for _, s := range r.GetSpans() {
			if match(s) {
				return s
			}
		}
		select {
		case <-r.exported:
		case <-timeout.C:
			t.Fatalf("no %s span recorded within 10s; have %d spans", what, len(r.GetSpans()))
		}
	}
}

// find returns the recorded spans that match.
func (r *spanRecorder) find(match func(tracetest.SpanStub) bool) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range r.GetSpans() {
		if match(s) {
			out = append(out, s)
		}
	}
	return out
}

// attr returns the string value of the span's attribute key, or "".
func attr(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.AsString()
		}
	}
	return ""
}

// logBuffer is an io.Writer safe for concurrent use that parses JSON lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

var _ io.Writer = (*logBuffer)(nil)

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns every line written so far, each decoded as a JSON object.
func (l *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	text := strings.TrimSpace(l.b.String())
	l.mu.Unlock()
	if text == "" {
		return nil
	}
	var out []map[string]any
	for line := range strings.SplitSeq(text, "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}
