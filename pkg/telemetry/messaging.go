package telemetry

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// InstrumentationName names the tracer of the spans this package starts
// (the publish and process spans).
const InstrumentationName = "github.com/shopfloor/shopfloor/pkg/telemetry"

// MessagingSystem is the messaging.system attribute of the message spans:
// every shopfloor stream runs on NATS JetStream.
const MessagingSystem = "nats"

// Inject writes the trace context and baggage of ctx into md under the W3C
// names traceparent, tracestate and baggage, overwriting those keys and
// leaving the others alone. md is a watermill message.Metadata, outbox
// headers or NATS headers flattened to strings. A ctx without a valid span
// context writes no traceparent (and without baggage, nothing at all); a
// nil md is left alone.
func (t *Telemetry) Inject(ctx context.Context, md map[string]string) {
	if md == nil {
		return
	}
	t.Propagator.Inject(ctx, propagation.MapCarrier(md))
}

// Extract returns a child of ctx carrying the remote span context and the
// baggage found in md, so that spans started from it continue the
// sender's trace. Missing, empty or malformed entries are ignored: with no
// usable traceparent the result carries no remote span (whatever span ctx
// already had stays). It never panics; md may be nil.
func (t *Telemetry) Extract(ctx context.Context, md map[string]string) context.Context {
	return t.Propagator.Extract(ctx, propagation.MapCarrier(md))
}

// PublisherDecorator wraps pub so that every message published through it
// carries the trace. For each message it starts a producer span
// "publish <topic>", child of msg.Context() (so set the context with
// msg.SetContext(ctx) before publishing, or the message starts a new
// trace), and injects that span into msg.Metadata (created if nil). The
// spans end when pub.Publish returns; its error, which is returned
// unchanged, marks all of them, as the publisher does not say which message
// failed. msg.Context() itself is not changed. Close closes pub.
func (t *Telemetry) PublisherDecorator(pub message.Publisher) message.Publisher {
	return &tracingPublisher{pub: pub, t: t}
}

// tracingPublisher is the message.Publisher returned by PublisherDecorator.
type tracingPublisher struct {
	pub message.Publisher
	t   *Telemetry
}

var _ message.Publisher = (*tracingPublisher)(nil)

func (p *tracingPublisher) Publish(topic string, msgs ...*message.Message) (err error) {
	tracer := p.t.Tracer(InstrumentationName)
	spans := make([]trace.Span, 0, len(msgs))
	returned := false
	defer func() { endSpans(spans, err, !returned) }()
	for _, msg := range msgs {
		ctx, span := tracer.Start(msg.Context(), "publish "+topic,
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(
				attribute.String(string(semconv.MessagingSystemKey), MessagingSystem),
				semconv.MessagingOperationTypeSend,
				semconv.MessagingOperationName("publish"),
				semconv.MessagingDestinationName(topic),
				semconv.MessagingMessageID(msg.UUID),
			))
		spans = append(spans, span)
		if msg.Metadata == nil {
			msg.Metadata = make(message.Metadata)
		}
		p.t.Inject(ctx, msg.Metadata)
	}
	err = p.pub.Publish(topic, msgs...)
	returned = true
	return err
}

func (p *tracingPublisher) Close() error { return p.pub.Close() }

// ConsumerMiddleware returns a watermill handler middleware that traces
// each message handled: it extracts the sender's trace from msg.Metadata,
// starts a consumer span "<handlerName> process" as its child (or as a
// child of msg.Context()'s span, or a new root, when the metadata has no
// trace), and sets it as the message's context with msg.SetContext, so the
// handler's spans and logger.InfoContext(msg.Context(), ...) lines join the
// trace. A handler error is recorded and sets the span status to Error. A
// panic sets Error and is not recovered (that is a Recoverer's job).
// Messages the handler returns without a span in their context get the
// consumer's context, so a decorated publisher continues the trace.
//
// Watermill runs the first middleware added outermost: added before Retry
// and Recoverer, one span covers every attempt of a delivery and sees a
// recovered panic as an error. Each redelivery gets its own span.
func (t *Telemetry) ConsumerMiddleware(handlerName string) message.HandlerMiddleware {
	tracer := t.Tracer(InstrumentationName)
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) (produced []*message.Message, err error) {
			ctx := t.Extract(msg.Context(), msg.Metadata)
			attrs := []attribute.KeyValue{
				attribute.String(string(semconv.MessagingSystemKey), MessagingSystem),
				semconv.MessagingOperationTypeProcess,
				semconv.MessagingOperationName("process"),
				semconv.MessagingConsumerGroupName(handlerName),
				semconv.MessagingMessageID(msg.UUID),
			}
			if topic := message.SubscribeTopicFromCtx(ctx); topic != "" {
				attrs = append(attrs, semconv.MessagingDestinationName(topic))
			}
			ctx, span := tracer.Start(ctx, handlerName+" process",
				trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(attrs...))
			returned := false
			defer func() { endSpans([]trace.Span{span}, err, !returned) }()
			msg.SetContext(ctx)
			produced, err = h(msg)
			returned = true
			for _, out := range produced {
				if out != nil && !trace.SpanContextFromContext(out.Context()).IsValid() {
					out.SetContext(ctx)
				}
			}
			return produced, err
		}
	}
}

// endSpans marks spans with err, or as failed when the wrapped call did
// not return (it panicked; the panic is not recovered here and keeps going
// up the stack), and ends them.
func endSpans(spans []trace.Span, err error, panicked bool) {
	for _, span := range spans {
		switch {
		case panicked:
			span.SetAttributes(semconv.ErrorTypeKey.String("panic"))
			span.SetStatus(codes.Error, "panic")
		case err != nil:
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}
