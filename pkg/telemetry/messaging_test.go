package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

type ctxKey struct{}

func TestInjectExtractRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ts, err := trace.ParseTraceState("vendor=abc")
	if err != nil {
		t.Fatal(err)
	}
	// A remote parent with a tracestate, as if from an upstream caller;
	// the local child span inherits the tracestate.
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true,
	})
	member, err := baggage.NewMember("tenant", "acme")
	if err != nil {
		t.Fatal(err)
	}
	bag, err := baggage.New(member)
	if err != nil {
		t.Fatal(err)
	}
	ctx := baggage.ContextWithBaggage(trace.ContextWithRemoteSpanContext(context.Background(), parent), bag)
	ctx, span := b.tel.Tracer("test").Start(ctx, "produce")
	defer span.End()

	md := map[string]string{"other": "kept", "traceparent": "00-stale"}
	b.tel.Inject(ctx, md)
	sc := span.SpanContext()
	wantMD := map[string]string{
		"traceparent": "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01",
		"tracestate":  "vendor=abc",
		"baggage":     "tenant=acme",
		"other":       "kept",
	}
	for k, v := range wantMD {
		if md[k] != v {
			t.Errorf("md[%q] = %q, want %q", k, md[k], v)
		}
	}

	in := context.WithValue(context.Background(), ctxKey{}, "v")
	out := b.tel.Extract(in, md)
	got := trace.SpanContextFromContext(out)
	if !got.IsRemote() || got.TraceID() != sc.TraceID() || got.SpanID() != sc.SpanID() || !got.IsSampled() {
		t.Errorf("extracted %+v, want the remote, sampled span %s/%s", got, sc.TraceID(), sc.SpanID())
	}
	if got.TraceState().Get("vendor") != "abc" {
		t.Errorf("extracted tracestate %q, want vendor=abc", got.TraceState())
	}
	if v := baggage.FromContext(out).Member("tenant").Value(); v != "acme" {
		t.Errorf("extracted baggage tenant=%q, want acme", v)
	}
	if out.Value(ctxKey{}) != "v" {
		t.Error("Extract lost the values of the context it was given")
	}
}

func TestInjectWithoutSpanWritesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	md := map[string]string{}
	b.tel.Inject(context.Background(), md)
	if len(md) != 0 {
		t.Errorf("Inject without a span wrote %v", md)
	}
	ctx, span := b.tel.Tracer("test").Start(context.Background(), "x")
	defer span.End()
	b.tel.Inject(ctx, nil) // must not panic
}

func TestExtractIgnoresBadMetadata(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		name string
		md   map[string]string
	}{
		{name: "nil", md: nil},
		{name: "empty", md: map[string]string{}},
		{name: "garbage", md: map[string]string{"traceparent": "garbage", "tracestate": "%%%", "baggage": ";;=;"}},
		{name: "zero trace id", md: map[string]string{"traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}},
		{name: "zero span id", md: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"}},
		{name: "forbidden version", md: map[string]string{"traceparent": "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
		{name: "short", md: map[string]string{"traceparent": "00-4bf92f35-00f067aa-01"}},
		{name: "upper case hex", md: map[string]string{"traceparent": "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := context.WithValue(context.Background(), ctxKey{}, "v")
			out := b.tel.Extract(in, tt.md)
			if sc := trace.SpanContextFromContext(out); sc.IsValid() {
				t.Errorf("Extract(%v) gave a valid span context %s/%s", tt.md, sc.TraceID(), sc.SpanID())
			}
			if out.Value(ctxKey{}) != "v" {
				t.Error("Extract lost the values of the context it was given")
			}
		})
	}
}

// stubPublisher records what it was asked to publish.
type stubPublisher struct {
	err      error
	mu       sync.Mutex
	metadata []map[string]string // copies, taken when Publish was called
	closed   bool
}

func (p *stubPublisher) Publish(_ string, msgs ...*message.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range msgs {
		md := make(map[string]string, len(m.Metadata))
		for k, v := range m.Metadata {
			md[k] = v
		}
		p.metadata = append(p.metadata, md)
	}
	return p.err
}

func (p *stubPublisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return nil
}

func TestPublisherDecoratorWrapsEachMessageInAProducerSpan(t *testing.T) {
	t.Parallel()
	errBroker := errors.New("broker down")
	tests := []struct {
		name    string
		msgs    int
		nilMeta bool
		pubErr  error
	}{
		{name: "one message", msgs: 1},
		{name: "batch", msgs: 3},
		{name: "message without metadata", msgs: 1, nilMeta: true},
		{name: "publish error", msgs: 2, pubErr: errBroker},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			stub := &stubPublisher{err: tt.pubErr}
			pub := b.tel.PublisherDecorator(stub)
			ctx, root := b.tel.Tracer("test").Start(context.Background(), "request")
			msgs := make([]*message.Message, tt.msgs)
			for i := range msgs {
				msgs[i] = message.NewMessage(watermill.NewUUID(), []byte("p"))
				if tt.nilMeta {
					msgs[i].Metadata = nil
				}
				msgs[i].SetContext(ctx)
			}
			err := pub.Publish("orders", msgs...)
			root.End()
			if !errors.Is(err, tt.pubErr) {
				t.Fatalf("Publish = %v, want %v", err, tt.pubErr)
			}
			if len(stub.metadata) != tt.msgs {
				t.Fatalf("inner publisher got %d messages, want %d", len(stub.metadata), tt.msgs)
			}
			for i, msg := range msgs {
				producers := b.spans.find(func(s tracetest.SpanStub) bool { return attr(s, "messaging.message.id") == msg.UUID })
				if len(producers) != 1 {
					t.Fatalf("message %d: %d spans, want 1 producer span", i, len(producers))
				}
				p := producers[0]
				if p.Name != "publish orders" || p.SpanKind != trace.SpanKindProducer {
					t.Errorf("span %q kind %v, want \"publish orders\" producer", p.Name, p.SpanKind)
				}
				if p.Parent.SpanID() != root.SpanContext().SpanID() || p.SpanContext.TraceID() != root.SpanContext().TraceID() {
					t.Errorf("producer span is not the child of the message's context span")
				}
				for k, v := range map[string]string{"messaging.system": "nats", "messaging.destination.name": "orders", "messaging.operation.type": "send"} {
					if got := attr(p, k); got != v {
						t.Errorf("attribute %s = %q, want %q", k, got, v)
					}
				}
				// Injected before the inner Publish ran, with the producer span.
				want := "00-" + p.SpanContext.TraceID().String() + "-" + p.SpanContext.SpanID().String() + "-01"
				if got := stub.metadata[i]["traceparent"]; got != want {
					t.Errorf("traceparent seen by the inner publisher %q, want %q", got, want)
				}
				if tt.pubErr != nil {
					if p.Status.Code != codes.Error || p.Status.Description != tt.pubErr.Error() {
						t.Errorf("status %+v, want Error %q", p.Status, tt.pubErr)
					}
				} else if p.Status.Code != codes.Unset {
					t.Errorf("status %+v, want Unset", p.Status)
				}
			}
			if err := pub.Close(); err != nil || !stub.closed {
				t.Errorf("Close = %v, inner closed = %v; want nil, true", err, stub.closed)
			}
		})
	}
}

func TestConsumerMiddlewareContinuesTheTraceFromMetadata(t *testing.T) {
	t.Parallel()
	errHandler := errors.New("handler failed")
	parentSC := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0xaa, 1}, SpanID: trace.SpanID{0xbb, 2}, TraceFlags: trace.FlagsSampled,
	})
	localSC := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0xcc, 3}, SpanID: trace.SpanID{0xdd, 4}, TraceFlags: trace.FlagsSampled,
	})
	traceparent := "00-" + parentSC.TraceID().String() + "-" + parentSC.SpanID().String() + "-01"

	tests := []struct {
		name       string
		md         map[string]string
		msgCtx     context.Context
		handlerErr error
		wantParent trace.SpanContext // zero: a new root
	}{
		{name: "continues the trace in the metadata", md: map[string]string{"traceparent": traceparent}, wantParent: parentSC},
		{name: "metadata wins over the message context", md: map[string]string{"traceparent": traceparent},
			msgCtx: trace.ContextWithSpanContext(context.Background(), localSC), wantParent: parentSC},
		{name: "no metadata: child of the message context", msgCtx: trace.ContextWithSpanContext(context.Background(), localSC), wantParent: localSC},
		{name: "no trace anywhere: a new root", md: map[string]string{}},
		{name: "garbage metadata: a new root", md: map[string]string{"traceparent": "garbage"}},
		{name: "handler error", md: map[string]string{"traceparent": traceparent}, handlerErr: errHandler, wantParent: parentSC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			msg := message.NewMessage(watermill.NewUUID(), []byte("p"))
			for k, v := range tt.md {
				msg.Metadata.Set(k, v)
			}
			if tt.msgCtx != nil {
				msg.SetContext(tt.msgCtx)
			}
			var seen trace.SpanContext
			produced := message.NewMessage(watermill.NewUUID(), []byte("out"))
			h := b.tel.ConsumerMiddleware("handle")(func(m *message.Message) ([]*message.Message, error) {
				seen = trace.SpanContextFromContext(m.Context())
				b.tel.Logger.InfoContext(m.Context(), "handling")
				return []*message.Message{produced}, tt.handlerErr
			})
			out, err := h(msg)
			if !errors.Is(err, tt.handlerErr) {
				t.Fatalf("handler returned %v, want %v", err, tt.handlerErr)
			}
			spans := b.spans.GetSpans()
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1 consumer span", len(spans))
			}
			s := spans[0]
			if s.Name != "handle process" || s.SpanKind != trace.SpanKindConsumer {
				t.Errorf("span %q kind %v, want \"handle process\" consumer", s.Name, s.SpanKind)
			}
			if tt.wantParent.IsValid() {
				if s.Parent.SpanID() != tt.wantParent.SpanID() || s.SpanContext.TraceID() != tt.wantParent.TraceID() {
					t.Errorf("parent %s/%s, want %s/%s", s.Parent.TraceID(), s.Parent.SpanID(), tt.wantParent.TraceID(), tt.wantParent.SpanID())
				}
			} else if s.Parent.IsValid() {
				t.Errorf("span has parent %s/%s, want a root", s.Parent.TraceID(), s.Parent.SpanID())
			}
			if !seen.Equal(s.SpanContext) {
				t.Errorf("handler saw span %s/%s in msg.Context(), want the consumer span %s/%s", seen.TraceID(), seen.SpanID(), s.SpanContext.TraceID(), s.SpanContext.SpanID())
			}
			if got := trace.SpanContextFromContext(out[0].Context()); !got.Equal(s.SpanContext) {
				t.Errorf("produced message's context span %s, want the consumer span", got.SpanID())
			}
			lines := b.logs.lines(t)
			if len(lines) != 1 || lines[0]["trace_id"] != s.SpanContext.TraceID().String() || lines[0]["span_id"] != s.SpanContext.SpanID().String() {
				t.Errorf("handler's log lines %v, want one carrying the consumer span", lines)
			}
			for k, v := range map[string]string{"messaging.system": "nats", "messaging.consumer.group.name": "handle", "messaging.message.id": msg.UUID, "messaging.operation.type": "process"} {
				if got := attr(s, k); got != v {
					t.Errorf("attribute %s = %q, want %q", k, got, v)
				}
			}
			if tt.handlerErr != nil {
				if s.Status.Code != codes.Error || s.Status.Description != tt.handlerErr.Error() {
					t.Errorf("status %+v, want Error %q", s.Status, tt.handlerErr)
				}
				if len(s.Events) != 1 || s.Events[0].Name != "exception" {
					t.Errorf("events %+v, want the recorded error", s.Events)
				}
			} else if s.Status.Code != codes.Unset {
				t.Errorf("status %+v, want Unset", s.Status)
			}
		})
	}
}

func TestConsumerMiddlewarePanic(t *testing.T) {
	t.Parallel()
	b := setup(t)
	h := b.tel.ConsumerMiddleware("handle")(func(*message.Message) ([]*message.Message, error) {
		panic("boom")
	})
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want the handler's panic to go on", r)
			}
		}()
		_, _ = h(message.NewMessage(watermill.NewUUID(), nil))
	}()
	spans := b.spans.GetSpans()
	if len(spans) != 1 || spans[0].Status.Code != codes.Error || attr(spans[0], "error.type") != "panic" {
		t.Fatalf("spans %+v, want one ended with status Error and error.type panic", spans)
	}
}

// handled is what the handler saw of one delivery.
type handled struct {
	uuid  string
	span  trace.SpanContext
	topic string
}

// TestTraceFlowsFromRequestToConsumerThroughWatermill: request span → producer span → metadata →
// consumer span, through watermill's in-process pub/sub and router.
func TestTraceFlowsFromRequestToConsumerThroughWatermill(t *testing.T) {
	t.Parallel()
	b := setup(t)
	logger := watermill.NopLogger{}
	ps := gochannel.NewGoChannel(gochannel.Config{}, logger)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, logger)
	if err != nil {
		t.Fatal(err)
	}
	router.AddMiddleware(b.tel.ConsumerMiddleware("handle"))
	errHandler := errors.New("handler failed")
	seen := make(chan handled, 10)
	var failed atomic.Bool
	router.AddConsumerHandler("handle", "orders", ps, func(msg *message.Message) error {
		seen <- handled{uuid: msg.UUID, span: trace.SpanContextFromContext(msg.Context()), topic: message.SubscribeTopicFromCtx(msg.Context())}
		b.tel.Logger.InfoContext(msg.Context(), "handled", "payload", string(msg.Payload))
		if string(msg.Payload) == "fail" && failed.CompareAndSwap(false, true) {
			return errHandler // the first delivery fails; gochannel redelivers
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- router.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-runDone; err != nil {
			t.Errorf("router: %v", err)
		}
		if err := ps.Close(); err != nil {
			t.Errorf("close pub/sub: %v", err)
		}
	})
	select {
	case <-router.Running():
	case <-time.After(10 * time.Second):
		t.Fatal("router did not start within 10s")
	}

	pub := b.tel.PublisherDecorator(ps)
	rootCtx, root := b.tel.Tracer("test").Start(context.Background(), "POST /orders")
	okMsg := message.NewMessage(watermill.NewUUID(), []byte("ok"))
	okMsg.SetContext(rootCtx)
	failMsg := message.NewMessage(watermill.NewUUID(), []byte("fail"))
	failMsg.SetContext(rootCtx)
	for _, m := range []*message.Message{okMsg, failMsg} {
		if err := pub.Publish("orders", m); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	root.End()
	rootSC := root.SpanContext()

	byID := func(id string, kind trace.SpanKind, status codes.Code) func(tracetest.SpanStub) bool {
		return func(s tracetest.SpanStub) bool {
			return s.SpanKind == kind && s.Status.Code == status && attr(s, "messaging.message.id") == id
		}
	}
	for _, tc := range []struct {
		name   string
		msg    *message.Message
		status codes.Code
	}{
		{name: "ok", msg: okMsg, status: codes.Unset},
		{name: "failed delivery", msg: failMsg, status: codes.Error},
		{name: "redelivery", msg: failMsg, status: codes.Unset},
	} {
		producer := b.spans.waitFor(t, tc.name+" producer", byID(tc.msg.UUID, trace.SpanKindProducer, codes.Unset))
		consumer := b.spans.waitFor(t, tc.name+" consumer", byID(tc.msg.UUID, trace.SpanKindConsumer, tc.status))
		if producer.Parent.SpanID() != rootSC.SpanID() || producer.SpanContext.TraceID() != rootSC.TraceID() {
			t.Errorf("%s: producer span is not the request span's child", tc.name)
		}
		if consumer.SpanContext.TraceID() != rootSC.TraceID() {
			t.Errorf("%s: consumer trace %s, want the request's %s", tc.name, consumer.SpanContext.TraceID(), rootSC.TraceID())
		}
		if consumer.Parent.SpanID() != producer.SpanContext.SpanID() || !consumer.Parent.IsRemote() {
			t.Errorf("%s: consumer parent %s (remote %v), want the producer span %s", tc.name, consumer.Parent.SpanID(), consumer.Parent.IsRemote(), producer.SpanContext.SpanID())
		}
		if consumer.Name != "handle process" || attr(consumer, "messaging.destination.name") != "orders" {
			t.Errorf("%s: consumer span %q destination %q, want \"handle process\" on orders", tc.name, consumer.Name, attr(consumer, "messaging.destination.name"))
		}
		if tc.status == codes.Error && consumer.Status.Description != errHandler.Error() {
			t.Errorf("%s: status description %q, want %q", tc.name, consumer.Status.Description, errHandler)
		}
	}

	// Three deliveries: ok, fail, redelivered fail. Each handler call saw
	// its own consumer span in msg.Context() and the subscribed topic.
	consumers := map[trace.SpanID]bool{}
	for _, s := range b.spans.find(func(s tracetest.SpanStub) bool { return s.SpanKind == trace.SpanKindConsumer }) {
		consumers[s.SpanContext.SpanID()] = true
	}
	for range 3 {
		h := <-seen
		if !consumers[h.span.SpanID()] || h.span.TraceID() != rootSC.TraceID() {
			t.Errorf("handler for %s saw span %s/%s, not one of the consumer spans", h.uuid, h.span.TraceID(), h.span.SpanID())
		}
		if h.topic != "orders" {
			t.Errorf("handler saw topic %q, want orders", h.topic)
		}
	}
	var logged int
	for _, l := range b.logs.lines(t) {
		if l["msg"] != "handled" {
			continue
		}
		logged++
		sid, err := trace.SpanIDFromHex(fmt.Sprint(l["span_id"]))
		if l["trace_id"] != rootSC.TraceID().String() || err != nil || !consumers[sid] {
			t.Errorf("handler log line %v does not carry the request's trace and a consumer span", l)
		}
	}
	if logged != 3 {
		t.Errorf("%d handler log lines, want 3", logged)
	}
}
