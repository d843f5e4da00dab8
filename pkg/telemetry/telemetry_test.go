package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/shopfloor/shopfloor/pkg/telemetry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func newTel(t *testing.T, logs io.Writer) (*telemetry.Telemetry, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tel, err := telemetry.New(context.Background(), telemetry.Config{
		ServiceName: "svc", ServiceVersion: "1.2.3", InstanceID: "i-1", SpanExporter: exp,
	}, logs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel, exp
}

func TestNewRequiresServiceName(t *testing.T) {
	t.Parallel()
	if _, err := telemetry.New(context.Background(), telemetry.Config{}, io.Discard); err == nil || !strings.Contains(err.Error(), "ServiceName") {
		t.Fatalf("err = %v, want one naming ServiceName", err)
	}
}

func TestLogsCarryTraceIDs(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	tel, _ := newTel(t, &logs)
	ctx, span := tel.Tracer("test").Start(context.Background(), "work")
	tel.Logger.InfoContext(ctx, "inside")
	span.End()
	tel.Logger.InfoContext(context.Background(), "outside")

	lines := logs.lines(t)
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want 2", len(lines))
	}
	in, out := lines[0], lines[1]
	if in["trace_id"] != span.SpanContext().TraceID().String() || in["span_id"] != span.SpanContext().SpanID().String() {
		t.Errorf("inside: trace_id=%v span_id=%v, want the span's %s/%s", in["trace_id"], in["span_id"], span.SpanContext().TraceID(), span.SpanContext().SpanID())
	}
	if _, ok := out["trace_id"]; ok {
		t.Errorf("outside a span the line has a trace_id: %v", out)
	}
	for _, l := range lines {
		if l["service"] != "svc" || l["version"] != "1.2.3" || l["instance"] != "i-1" {
			t.Errorf("line lacks resource fields: %v", l)
		}
	}
}

func TestInjectExtractRoundTrip(t *testing.T) {
	t.Parallel()
	tel, _ := newTel(t, io.Discard)
	ctx, span := tel.Tracer("test").Start(context.Background(), "produce")
	defer span.End()
	md := map[string]string{}
	tel.Inject(ctx, md)
	if !strings.Contains(md["traceparent"], span.SpanContext().TraceID().String()) {
		t.Fatalf("traceparent = %q, want the trace id", md["traceparent"])
	}
	got := trace.SpanContextFromContext(tel.Extract(context.Background(), md))
	if !got.IsRemote() || got.TraceID() != span.SpanContext().TraceID() || got.SpanID() != span.SpanContext().SpanID() {
		t.Fatalf("extracted %v, want the remote span %v", got, span.SpanContext())
	}
	for _, md := range []map[string]string{nil, {}, {"traceparent": "garbage"}, {"traceparent": "00-00000000000000000000000000000000-0000000000000000-01"}} {
		if sc := trace.SpanContextFromContext(tel.Extract(context.Background(), md)); sc.IsValid() {
			t.Errorf("Extract(%v) gave a valid span context %v", md, sc)
		}
	}
}

// TestWatermillPropagation: producer span → metadata → consumer span, over
// watermill's in-process pub/sub (this package only shapes the metadata;
// the example service proves the same over real JetStream).
func TestWatermillPropagation(t *testing.T) {
	t.Parallel()
	tel, spans := newTel(t, io.Discard)
	logger := watermill.NopLogger{}
	ps := gochannel.NewGoChannel(gochannel.Config{}, logger)
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	router.AddMiddleware(tel.ConsumerMiddleware("handle"))
	type seen struct {
		trace trace.SpanContext
	}
	got := make(chan seen, 10)
	var failedOnce sync.Once
	router.AddConsumerHandler("handle", "topic", ps, func(msg *message.Message) error {
		select {
		case got <- seen{trace: trace.SpanContextFromContext(msg.Context())}:
		default:
		}
		var err error
		if string(msg.Payload) == "fail" {
			// Fail the first delivery only; the redelivery succeeds.
			failedOnce.Do(func() { err = errors.New("handler failed") })
		}
		return err
	})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- router.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-runDone; err != nil {
			t.Errorf("router: %v", err)
		}
		_ = ps.Close()
	})
	<-router.Running()

	pub := tel.PublisherDecorator(ps)
	rootCtx, root := tel.Tracer("test").Start(context.Background(), "http request")
	msg := message.NewMessage(watermill.NewUUID(), []byte("ok"))
	msg.SetContext(rootCtx)
	if err := pub.Publish("topic", msg); err != nil {
		t.Fatal(err)
	}
	root.End()
	s := <-got
	if s.trace.TraceID() != root.SpanContext().TraceID() {
		t.Fatalf("handler trace %s, want %s", s.trace.TraceID(), root.SpanContext().TraceID())
	}

	failMsg := message.NewMessage(watermill.NewUUID(), []byte("fail"))
	failMsg.SetContext(rootCtx)
	if err := pub.Publish("topic", failMsg); err != nil {
		t.Fatal(err)
	}
	<-got

	var producer, consumer, failed *tracetest.SpanStub
	deadline := time.Now().Add(10 * time.Second)
	for producer == nil || consumer == nil || failed == nil {
		if time.Now().After(deadline) {
			t.Fatalf("spans not recorded: producer=%v consumer=%v failed=%v", producer != nil, consumer != nil, failed != nil)
		}
		all := spans.GetSpans()
		producer, consumer, failed = nil, nil, nil
		for i := range all {
			sp := &all[i]
			switch {
			case sp.SpanKind == trace.SpanKindProducer && producer == nil:
				producer = sp
			case sp.SpanKind == trace.SpanKindConsumer && sp.Status.Code == codes.Error:
				failed = sp
			case sp.SpanKind == trace.SpanKindConsumer:
				consumer = sp
			}
		}
		runtime.Gosched()
	}
	if producer.Parent.SpanID() != root.SpanContext().SpanID() {
		t.Errorf("producer span's parent is not the request span")
	}
	if consumer.Parent.SpanID() != producer.SpanContext.SpanID() || consumer.SpanContext.TraceID() != root.SpanContext().TraceID() {
		t.Errorf("consumer span is not the producer's child in the same trace")
	}
}

func TestMetricsHandlerServesMeterInstruments(t *testing.T) {
	t.Parallel()
	tel, _ := newTel(t, io.Discard)
	c, err := tel.Meter("test").Int64Counter("widgets_made")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 3)
	srv := httptest.NewServer(tel.MetricsHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), "widgets_made_total") || !strings.Contains(string(body), "widgets_made_total{") && !strings.Contains(string(body), "widgets_made_total 3") {
		t.Fatalf("metrics do not show widgets_made_total:\n%s", body)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "widgets_made_total") && !strings.HasSuffix(line, " 3") {
			t.Fatalf("counter line %q, want value 3", line)
		}
	}
	if !strings.Contains(string(body), "go_goroutines") {
		t.Fatal("Go runtime metrics missing")
	}
}
