package telemetry

import (
	"context"
	"log/slog"
	"slices"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys added by NewLogHandler. They are the names Grafana's
// Loki-to-Tempo derived fields and most log pipelines look for.
const (
	LogKeyTraceID = "trace_id"
	LogKeySpanID  = "span_id"
)

// NewLogHandler wraps h so that a record logged with a context carrying a
// valid span context (a local span, or a remote one put there by Extract)
// gets trace_id and span_id attributes, as lower-case hex. Records logged
// without a context, with context.Background(), or with an invalid span
// context pass through unchanged. The ids stay at the top level of the
// record even under Logger.WithGroup, so a log pipeline finds them in one
// place. Enabled, WithAttrs and WithGroup delegate to h. Use the *Context
// logging methods (logger.InfoContext(ctx, ...)); logger.Info has no
// context and so no ids.
func NewLogHandler(h slog.Handler) slog.Handler {
	return &traceHandler{base: h, inner: h}
}

// traceHandler adds the span context's ids to records.
//
// Until the first WithGroup, base and inner are the same handler and the ids
// are added to the record. After it, the record's attributes belong to the
// open group, so the ids are instead added to base (the handler before the
// first group) and the later groups and attributes (ops) are replayed on
// top, which costs a few allocations per record that has a span.
type traceHandler struct {
	base  slog.Handler
	inner slog.Handler
	ops   []func(slog.Handler) slog.Handler
}

func (t *traceHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.inner.Enabled(ctx, l)
}

func (t *traceHandler) Handle(ctx context.Context, r slog.Record) error {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return t.inner.Handle(ctx, r)
	}
	ids := []slog.Attr{
		slog.String(LogKeyTraceID, sc.TraceID().String()),
		slog.String(LogKeySpanID, sc.SpanID().String()),
	}
	if len(t.ops) == 0 {
		r = r.Clone()
		r.AddAttrs(ids...)
		return t.inner.Handle(ctx, r)
	}
	h := t.base.WithAttrs(ids)
	for _, op := range t.ops {
		h = op(h)
	}
	return h.Handle(ctx, r)
}

func (t *traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return t
	}
	if len(t.ops) == 0 {
		h := t.inner.WithAttrs(attrs)
		return &traceHandler{base: h, inner: h}
	}
	return &traceHandler{
		base:  t.base,
		inner: t.inner.WithAttrs(attrs),
		ops:   append(slices.Clip(t.ops), func(h slog.Handler) slog.Handler { return h.WithAttrs(attrs) }),
	}
}

func (t *traceHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return t
	}
	return &traceHandler{
		base:  t.base,
		inner: t.inner.WithGroup(name),
		ops:   append(slices.Clip(t.ops), func(h slog.Handler) slog.Handler { return h.WithGroup(name) }),
	}
}
