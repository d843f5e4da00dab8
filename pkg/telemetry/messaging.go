package telemetry

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Inject writes the trace context of ctx into md (traceparent, tracestate,
// baggage). A ctx without a span writes nothing.
func (t *Telemetry) Inject(ctx context.Context, md map[string]string) {
	t.Propagator.Inject(ctx, propagation.MapCarrier(md))
}

// Extract returns ctx with the remote span context found in md, if any.
// Missing or malformed metadata yields ctx unchanged.
func (t *Telemetry) Extract(ctx context.Context, md map[string]string) context.Context {
	return t.Propagator.Extract(ctx, propagation.MapCarrier(md))
}

const tracerName = "github.com/shopfloor/shopfloor/pkg/telemetry"

// PublisherDecorator wraps a watermill publisher: each message gets a
// producer span, child of msg.Context(), whose context is injected into the
// message's metadata.
func (t *Telemetry) PublisherDecorator(pub message.Publisher) message.Publisher {
	return &tracingPublisher{pub: pub, t: t}
}

type tracingPublisher struct {
	pub message.Publisher
	t   *Telemetry
}

func (p *tracingPublisher) Publish(topic string, msgs ...*message.Message) error {
	spans := make([]trace.Span, len(msgs))
	for i, msg := range msgs {
		ctx, span := p.t.Tracer(tracerName).Start(msg.Context(), "publish "+topic,
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(
				attribute.String("messaging.system", "nats"),
				attribute.String("messaging.operation.type", "publish"),
				attribute.String("messaging.destination.name", topic),
				attribute.String("messaging.message.id", msg.UUID),
			))
		p.t.Inject(ctx, msg.Metadata)
		spans[i] = span
	}
	err := p.pub.Publish(topic, msgs...)
	for _, span := range spans {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
	return err
}

func (p *tracingPublisher) Close() error { return p.pub.Close() }

// ConsumerMiddleware starts a consumer span for each message, child of the
// trace in its metadata, and sets it as the message's context so the
// handler's work and logs join the trace. A handler error marks the span.
func (t *Telemetry) ConsumerMiddleware(handlerName string) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			ctx := t.Extract(msg.Context(), msg.Metadata)
			ctx, span := t.Tracer(tracerName).Start(ctx, handlerName+" process",
				trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(
					attribute.String("messaging.system", "nats"),
					attribute.String("messaging.operation.type", "process"),
					attribute.String("messaging.consumer.group.name", handlerName),
					attribute.String("messaging.message.id", msg.UUID),
				))
			defer span.End()
			msg.SetContext(ctx)
			out, err := h(msg)
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			return out, err
		}
	}
}
