package kafkastream

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopfloor/shopfloor/pkg/stream"
)

// NewBatchGroup is NewGroup for a stream.BatchHandler (a service's batch
// consumer, ADR 0045), with stream.NewBatchGroup's contract: a call gets up
// to cfg.MaxBatch records of one partition in offset order (what the
// partition's worker has ready, never a wait to fill, so at a low rate
// calls have one record), and their offsets are marked together when it
// returns nil. When a call with several records fails (any error, or a
// panic), the same records are handed again one at a time, each with
// Handler's contract (retries, infrastructure waits, dead letters); the
// failed batch call does not spend a record's budget. After a stop or a
// revoke, a batch not yet acknowledged is handled again by the
// partition's next owner: claim its event IDs with inbox.ClaimBatch.
func NewBatchGroup(seeds []string, cfg GroupConfig, handler stream.BatchHandler, logger *slog.Logger) (*Group, error) {
	if handler == nil {
		return nil, fmt.Errorf("%w: group %s: nil handler", stream.ErrInvalid, cfg.Name)
	}
	var g *Group
	g, err := newGroup(seeds, cfg, func(ctx context.Context, d stream.Delivery) error {
		g.metrics.batch(g.cfg, 1)
		return handler(ctx, []stream.Delivery{d})
	}, logger)
	if err != nil {
		return nil, err
	}
	g.batch = handler
	return g, nil
}

// handleBatch runs the batch handler once on rs (two or more records).
// It reports whether the batch is done (acknowledged: offsets marked),
// and, if not, whether the worker is stopping (the records are handed
// back uncommitted); otherwise the caller handles them one at a time.
func (w *worker) handleBatch(rs []*kgo.Record) (done, stopping bool) {
	g := w.s.g
	ds := make([]stream.Delivery, len(rs))
	for i, r := range rs {
		ds[i] = delivery(r)
		ds[i].NumDelivered = 1
	}
	start := g.cfg.Now()
	err := g.callBatch(w.handlerCtx, ds)
	elapsed := g.cfg.Now().Sub(start)
	switch {
	case err == nil:
		g.metrics.observe(g.cfg, outcomeAck, elapsed)
		w.s.cl.MarkCommitRecords(rs...)
		return true, false
	case w.stopping.Err() != nil:
		g.metrics.observe(g.cfg, outcomeHandedBack, elapsed)
		return false, true
	}
	g.metrics.observe(g.cfg, outcomeRetry, elapsed)
	g.log.Info("batch failed; handling its records one at a time", "partition", rs[0].Partition,
		"first_offset", rs[0].Offset, "records", len(rs), "error", err)
	return false, false
}

// callBatch runs the batch handler on ds (invoke), in a consumer span of
// a new trace that links to each record's trace context (the
// OpenTelemetry messaging convention for batches).
func (g *Group) callBatch(base context.Context, ds []stream.Delivery) error {
	g.metrics.batch(g.cfg, len(ds))
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithNewRoot(),
		trace.WithAttributes(attribute.String("messaging.system", "kafka"), attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", g.cfg.Topic), attribute.String("messaging.consumer.group.name", g.cfg.Name),
			attribute.Int("messaging.batch.message_count", len(ds)))}
	if g.cfg.Tracer != nil && g.cfg.Extract != nil {
		links := make([]trace.Link, 0, len(ds))
		for _, d := range ds {
			if sc := trace.SpanContextFromContext(g.cfg.Extract(base, d.Headers)); sc.IsValid() {
				links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.String("messaging.message.id", d.ID)}})
			}
		}
		opts = append(opts, trace.WithLinks(links...))
	}
	return g.invoke(base, nil, opts, func(ctx context.Context) error { return g.batch(ctx, ds) })
}
