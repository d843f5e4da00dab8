// Package indexstream holds search's consumers: a Projector applies the
// events of one stream (CATALOG into the product index, ORDERS into the
// order index) to one projection, live (group "search") or a rebuild's
// copy (a fresh group that replays the stream from the start).
//
// Contract: derived, may lag; converges; never moves backward. A batch
// of a partition's deliveries (ADR 0017) is handled in one transaction
// that upserts each document only when the event's entity version is
// newer than the stored one and advances the partition's position, so a duplicate, a redelivery, a
// redrive or a replay changes nothing (version compare, no inbox: the
// version is the stronger guard, because it also drops an old event that
// arrives after a newer one). The group hands one partition's events over
// in stream order, so each key's versions arrive in order except after a
// redrive; a projection fed the same stream in any such order ends equal
// to one fed in order. Unreadable events are poison (dead-lettered);
// database errors are retried.
package indexstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/search/internal/index"
	"github.com/shopfloor/shopfloor/services/search/internal/indexpg"
)

// Group is search's live consumer group on CATALOG and on ORDERS.
const Group = "search"

// Metrics counts what the projectors did with events.
type Metrics struct {
	events *prometheus.CounterVec
}

// NewMetrics registers search_projection_events_total{stream, outcome}
// (outcome: applied, stale, ignored) on reg, or returns the one already
// registered there. A nil reg gives Metrics that count nothing visible.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "search_projection_events_total",
		Help: "Events finished by search's projections, by stream and outcome: applied (document changed), stale (older or equal version: skipped), ignored (type not indexed).",
	}, []string{"stream", "outcome"})
	if reg != nil {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("search metrics: %w", err)
			}
			existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
			if !ok {
				return nil, fmt.Errorf("search metrics: %w", err)
			}
			c = existing
		}
	}
	return &Metrics{events: c}, nil
}

// Zero exports streamName's counters at zero from the start, so
// dashboards and alerts see every series (and rate() works) before the
// first event of each outcome.
func (m *Metrics) Zero(streamName string) {
	for _, o := range []index.Outcome{index.Applied, index.Stale, index.Ignored} {
		m.events.WithLabelValues(streamName, string(o))
	}
}

// Projector applies one stream's events to one projection.
type Projector struct {
	Pool *pgxpool.Pool
	// Projection is where the events go: indexpg.LiveProducts or
	// LiveOrders, or a rebuild's copy of one. Its Kind picks the decoder.
	Projection indexpg.Projection
	// Stream is the name of the stream consumed, recorded as each
	// document's source and used as the metrics label.
	Stream  string
	Metrics *Metrics
	Log     *slog.Logger
}

// Handle is the stream.Handler: HandleBatch of one delivery.
func (p *Projector) Handle(ctx context.Context, d stream.Delivery) error {
	return p.HandleBatch(ctx, []stream.Delivery{d})
}

// projected is one event of a batch.
type projected struct {
	ev      events.Envelope
	src     index.Source
	apply   func(pgx.Tx) (bool, error) // nil: a type the projection ignores
	outcome index.Outcome
}

// HandleBatch is the stream.BatchHandler: the events of ds (one
// partition's, in stream order) are applied in one transaction, which
// advances the partition's position to the last of them. Unreadable
// events are poison (stream.Permanent: a batch that holds one fails, the
// group hands its events over one at a time, and the poison one is
// dead-lettered alone); database errors are retried.
func (p *Projector) HandleBatch(ctx context.Context, ds []stream.Delivery) error {
	ps := make([]*projected, 0, len(ds))
	for _, d := range ds {
		e, err := p.decode(ctx, d)
		if err != nil {
			return err
		}
		ps = append(ps, e)
	}
	if len(ps) == 0 {
		return nil
	}
	err := pgdb.InTx(ctx, p.Pool, func(tx pgx.Tx) error {
		for _, e := range ps {
			if e.apply == nil {
				continue
			}
			applied, err := e.apply(tx)
			if err != nil {
				return fmt.Errorf("%s %s (v%d): %w", e.ev.Type, e.ev.ID, e.ev.AggregateVersion, err)
			}
			e.outcome = index.Stale
			if applied {
				e.outcome = index.Applied
			}
		}
		return indexpg.Advance(ctx, tx, p.Projection, ps[len(ps)-1].src)
	})
	if err != nil {
		return err
	}
	for _, e := range ps {
		if p.Metrics != nil {
			p.Metrics.events.WithLabelValues(p.Stream, string(e.outcome)).Inc()
		}
		if e.outcome == index.Stale && p.Log != nil {
			p.Log.DebugContext(ctx, "stale event skipped", "stream", p.Stream, "type", e.ev.Type, "subject", e.ev.Subject, "version", e.ev.AggregateVersion)
		}
	}
	return nil
}

// decode reads a delivery into what it does to the projection, or a
// Permanent error for poison.
func (p *Projector) decode(ctx context.Context, d stream.Delivery) (*projected, error) {
	ev, err := events.Unmarshal(d.Payload)
	if err != nil {
		return nil, stream.Permanent(fmt.Errorf("unreadable event at %s seq %d: %w", d.Subject, d.Sequence, err))
	}
	e := &projected{ev: ev, outcome: index.Ignored,
		src: index.Source{Stream: p.Stream, Partition: d.Partition, Sequence: d.Sequence, EventID: ev.ID, EventTime: ev.Time, Published: d.Published}}
	switch p.Projection.Kind {
	case index.Products:
		doc, err := index.ProductFromEvent(ev)
		if err != nil && !errors.Is(err, index.ErrIgnored) {
			return nil, stream.Permanent(err)
		}
		if err == nil {
			e.apply = func(tx pgx.Tx) (bool, error) { return indexpg.ApplyProduct(ctx, tx, p.Projection, doc, e.src) }
		}
	case index.Orders:
		doc, err := index.OrderFromEvent(ev)
		if err != nil && !errors.Is(err, index.ErrIgnored) {
			return nil, stream.Permanent(err)
		}
		if err == nil {
			e.apply = func(tx pgx.Tx) (bool, error) { return indexpg.ApplyOrder(ctx, tx, p.Projection, doc, e.src) }
		}
	default:
		return nil, fmt.Errorf("projector for %s: unknown index kind %v", p.Stream, p.Projection.Kind)
	}
	return e, nil
}
