package kafkastream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopfloor/shopfloor/pkg/stream"
)

// Handler call outcomes for the duration histogram; the same words as
// pkg/stream's.
const (
	outcomeAck         = "ack"
	outcomeRetry       = "retry"
	outcomeDeadLetter  = "dead_letter"
	outcomeHandedBack  = "handed_back"
	outcomeInfraFailed = "infrastructure_retry"
)

// delivery is r as pkg/stream's Delivery. NumDelivered is set by the
// caller (the attempt number in this process).
func delivery(r *kgo.Record) stream.Delivery {
	h := make(map[string]string, len(r.Headers))
	for _, kv := range r.Headers {
		if _, seen := h[kv.Key]; !seen {
			h[kv.Key] = string(kv.Value)
		}
	}
	key := h[stream.HeaderKey]
	if key == "" {
		key = string(r.Key)
	}
	return stream.Delivery{
		ID:        h[stream.HeaderEventID],
		Key:       key,
		Partition: int(r.Partition),
		Subject:   subject(r.Topic, r.Partition),
		Sequence:  uint64(r.Offset),
		Published: r.Timestamp,
		Headers:   h,
		Payload:   r.Value,
	}
}

// handlerTimeoutError is a handler call that ran out of HandlerTimeout:
// never an infrastructure error (as in pkg/stream).
type handlerTimeoutError struct {
	err   error
	limit time.Duration
}

func (e *handlerTimeoutError) Error() string {
	return fmt.Sprintf("handler timed out (HandlerTimeout %s): %v", e.limit, e.err)
}
func (e *handlerTimeoutError) Unwrap() error { return e.err }

// call runs the handler on d (invoke), in a consumer span that is a
// child of the record's trace context.
func (g *Group) call(base context.Context, d stream.Delivery) error {
	var withTrace func(context.Context) context.Context
	if g.cfg.Extract != nil {
		withTrace = func(ctx context.Context) context.Context { return g.cfg.Extract(ctx, d.Headers) }
	}
	return g.invoke(base, withTrace, []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("messaging.system", "kafka"), attribute.String("messaging.destination.name", g.cfg.Topic),
			attribute.String("messaging.consumer.group.name", g.cfg.Name), attribute.String("messaging.message.id", d.ID))},
		func(ctx context.Context) error { return g.handler(ctx, d) })
}

// invoke runs fn with HandlerTimeout under base (which ends
// HandlerTimeout after the worker is told to stop), its ctx given the
// trace context withTrace returns (if set), in a span "process <topic>"
// started with opts (if a Tracer is set); it marks an error that came
// with the timeout and turns a panic into an error. call and callBatch
// differ only in what they pass.
func (g *Group) invoke(base context.Context, withTrace func(context.Context) context.Context, opts []trace.SpanStartOption, fn func(context.Context) error) (err error) {
	hctx, cancel := context.WithTimeout(base, g.cfg.HandlerTimeout)
	defer cancel()
	if withTrace != nil {
		hctx = withTrace(hctx)
	}
	if g.cfg.Tracer != nil {
		var span trace.Span
		hctx, span = g.cfg.Tracer.Start(hctx, "process "+g.cfg.Topic, opts...)
		defer func() {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}()
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v\n%s", r, debug.Stack())
		}
	}()
	err = fn(hctx)
	if err != nil && base.Err() == nil && errors.Is(hctx.Err(), context.DeadlineExceeded) {
		err = &handlerTimeoutError{err: err, limit: g.cfg.HandlerTimeout}
	}
	return err
}

// infrastructure reports whether a handler error is a dependency's
// failure; a permanent error or a handler timeout never is.
func (g *Group) infrastructure(err error) bool {
	var to *handlerTimeoutError
	if err == nil || stream.IsPermanent(err) || errors.As(err, &to) {
		return false
	}
	return g.cfg.Infrastructure(err)
}

// infraWait is a partition waiting on a dependency, as in pkg/stream: the
// record is kept and retried in the process without spending its budget.
type infraWait struct {
	g       *Group
	since   time.Time // zero: not waiting
	retries int
}

// retry records an infrastructure error and waits InfrastructureBackoff;
// false when ctx (the worker stopping) ended first.
func (w *infraWait) retry(ctx context.Context, log *slog.Logger, err error) bool {
	if w.since.IsZero() {
		w.since = w.g.cfg.Now()
		w.g.metrics.waiting(w.g.cfg, 1)
		log.WarnContext(ctx, "dependency unavailable: the partition waits and retries its record (no delivery budget spent)", "error", err)
	}
	w.retries++
	w.g.metrics.infraRetry(w.g.cfg)
	return w.g.cfg.InfrastructureBackoff.Sleep(ctx, w.retries) == nil
}

// end ends the wait, if the partition was waiting.
func (w *infraWait) end(log *slog.Logger, outcome string) {
	if w.since.IsZero() {
		return
	}
	w.g.metrics.waiting(w.g.cfg, -1)
	log.Info("partition no longer waits on a dependency", "waited", w.g.cfg.Now().Sub(w.since), "retries", w.retries, "outcome", outcome)
	w.since, w.retries = time.Time{}, 0
}
