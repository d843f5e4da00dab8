package telemetry_test

import (
	"context"
	"log/slog"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/shopfloor/shopfloor/pkg/telemetry"
)

func TestLogHandlerAddsSpanIDs(t *testing.T) {
	t.Parallel()
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
	})
	const wantTrace, wantSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	withSpan := trace.ContextWithSpanContext(context.Background(), sc)
	remote := trace.ContextWithRemoteSpanContext(context.Background(), sc)
	invalid := trace.ContextWithSpanContext(context.Background(), trace.SpanContext{})

	tests := []struct {
		name string
		log  func(*slog.Logger)
		// wantIDs: the line has trace_id and span_id at the top level.
		wantIDs bool
		// group, when set, is a group that must hold key "a" = "1" and not
		// the ids.
		group string
	}{
		{name: "span in context", log: func(l *slog.Logger) { l.InfoContext(withSpan, "m") }, wantIDs: true},
		{name: "remote span context", log: func(l *slog.Logger) { l.InfoContext(remote, "m") }, wantIDs: true},
		{name: "with attrs", log: func(l *slog.Logger) { l.With("k", "v").WarnContext(withSpan, "m") }, wantIDs: true},
		{name: "under a group", log: func(l *slog.Logger) { l.WithGroup("req").With("a", "1").InfoContext(withSpan, "m", "b", 2) }, wantIDs: true, group: "req"},
		{name: "under a group, no span", log: func(l *slog.Logger) { l.WithGroup("req").InfoContext(context.Background(), "m", "a", "1") }, group: "req"},
		{name: "background context", log: func(l *slog.Logger) { l.InfoContext(context.Background(), "m") }},
		{name: "no context", log: func(l *slog.Logger) { l.Info("m") }},
		{name: "invalid span context", log: func(l *slog.Logger) { l.InfoContext(invalid, "m") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf logBuffer
			tt.log(slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(&buf, nil))))
			lines := buf.lines(t)
			if len(lines) != 1 {
				t.Fatalf("%d log lines, want 1", len(lines))
			}
			line := lines[0]
			if tt.wantIDs {
				if line[telemetry.LogKeyTraceID] != wantTrace || line[telemetry.LogKeySpanID] != wantSpan {
					t.Errorf("trace_id=%v span_id=%v, want %s/%s; line %v", line["trace_id"], line["span_id"], wantTrace, wantSpan, line)
				}
			} else {
				for _, k := range []string{"trace_id", "span_id"} {
					if v, ok := line[k]; ok {
						t.Errorf("line has %s=%v without a span: %v", k, v, line)
					}
				}
			}
			if tt.group != "" {
				g, ok := line[tt.group].(map[string]any)
				if !ok {
					t.Fatalf("no group %q in %v", tt.group, line)
				}
				if g["a"] != "1" {
					t.Errorf("group %q lost its attribute a: %v", tt.group, g)
				}
				if _, ok := g["trace_id"]; ok {
					t.Errorf("trace_id inside group %q, want it at the top level: %v", tt.group, line)
				}
			}
		})
	}
}

func TestLoggerFieldsAndLevel(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *telemetry.Config) { c.LogLevel = slog.LevelWarn })
	ctx, span := b.tel.Tracer("test").Start(context.Background(), "work")
	b.tel.Logger.InfoContext(ctx, "dropped below the level")
	b.tel.Logger.WarnContext(ctx, "kept")
	span.End()

	lines := b.logs.lines(t)
	if len(lines) != 1 {
		t.Fatalf("%d lines, want only the warning: %v", len(lines), lines)
	}
	want := map[string]string{
		"msg": "kept", "level": "WARN", "service": "svc", "version": "1.2.3", "instance": "i-1",
		"trace_id": span.SpanContext().TraceID().String(), "span_id": span.SpanContext().SpanID().String(),
	}
	for k, v := range want {
		if lines[0][k] != v {
			t.Errorf("%s = %v, want %q", k, lines[0][k], v)
		}
	}
}
