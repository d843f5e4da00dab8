// Package orderstream holds orders' consumer of the PAYMENTS stream: it
// moves orders to paid or payment_failed, and asks for refunds of payments
// an order cannot take, including a payment whose amount or currency is
// not the order's total (never applied; counted in
// orders_payment_mismatches_total).
//
// Replay-safe: each event is applied through the inbox (inbox.ApplyBatch:
// the claims commit in the same transaction as the effects), so a
// redelivery, a redrive or a replay of the stream changes nothing. Per
// order in order: PAYMENTS is keyed by order id and the batch group hands
// a partition's events over in stream order, a batch at a time (ADR
// 0017).
package orderstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/inbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/orders/internal/order"
	"github.com/shopfloor/shopfloor/services/orders/internal/ordersvc"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// Group is the consumer group name of orders on PAYMENTS.
const Group = "orders"

// Applier applies a payment outcome in a transaction (ordersvc.Service).
type Applier interface {
	ApplyPayment(ctx context.Context, tx pgx.Tx, parent events.Envelope, p ordersvc.PaymentEvent) (ordersvc.PaymentOutcome, error)
}

var _ Applier = (*ordersvc.Service)(nil)

// Payments handles PAYMENTS deliveries.
type Payments struct {
	Pool    *pgxpool.Pool
	Applier Applier
	Log     *slog.Logger
	// Metrics counts what the handler did (NewMetrics); nil counts
	// nothing.
	Metrics *Metrics
}

// Metrics are the consumer's counters.
type Metrics struct {
	mismatches *prometheus.CounterVec
}

// NewMetrics registers on reg orders_payment_mismatches_total{reason}:
// payments whose amount or currency was not their order's total
// (reason amount_mismatch or currency_mismatch), counted once per payment
// when orders asked for its refund; redeliveries and replays do not count.
// Any increase is a bug or tampering upstream: nothing in a healthy
// system charges an order another amount.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{mismatches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "orders_payment_mismatches_total",
		Help: "Payments not applied because their amount or currency was not the order's total, by reason (refund asked for)."},
		[]string{"reason"})}
	for _, r := range []string{ordersapi.ReasonAmountMismatch, ordersapi.ReasonCurrencyMismatch} {
		m.mismatches.WithLabelValues(r) // a series at 0 from the start, for rate() and alerts
	}
	if err := reg.Register(m.mismatches); err != nil {
		return nil, fmt.Errorf("orderstream: metrics: %w", err)
	}
	return m, nil
}

func (m *Metrics) mismatch(reason string) {
	if m != nil && reason != "" {
		m.mismatches.WithLabelValues(reason).Inc()
	}
}

// paymentSchemas are the PAYMENTS schemas this build reads
// (events.Readable: an unknown schemaversion is poison).
var paymentSchemas = paymentsapi.Schemas()

// Handle is the stream.Handler: HandleBatch of one delivery.
func (h *Payments) Handle(ctx context.Context, d stream.Delivery) error {
	return h.HandleBatch(ctx, []stream.Delivery{d})
}

// applied is one payment outcome of a batch.
type applied struct {
	ev      events.Envelope
	p       paymentsapi.PaymentResult
	outcome ordersvc.PaymentOutcome
}

// HandleBatch is the stream.BatchHandler: the payment outcomes of every
// event in ds, the events they cause and their inbox claims commit in one
// transaction (inbox.ApplyBatch), in stream order. Events other than
// payment.succeeded and payment.failed are acknowledged untouched; an
// unreadable event, a bad payload or an unknown order is poison
// (stream.Permanent: a batch that holds one fails, the group hands its
// events over one at a time, and the poison one is dead-lettered alone);
// database errors are retried.
func (h *Payments) HandleBatch(ctx context.Context, ds []stream.Delivery) error {
	as := make([]*applied, 0, len(ds))
	effects := make([]inbox.Effect, 0, len(ds))
	for _, d := range ds {
		a, err := decode(d)
		if err != nil {
			return err
		}
		if a == nil {
			continue // not ours to act on (payment.refunded, newer types)
		}
		as = append(as, a)
		effects = append(effects, inbox.Effect{ID: a.ev.ID, Apply: func(ctx context.Context, tx pgx.Tx) error { return h.apply(ctx, tx, a) }})
	}
	first, err := inbox.ApplyBatch(ctx, h.Pool, Group, effects)
	if err != nil {
		return err
	}
	for i, a := range as {
		if !first[i] {
			a.outcome = ordersvc.PaymentOutcome{Result: "duplicate"}
		}
		if a.outcome.Mismatch != "" {
			h.Metrics.mismatch(a.outcome.Mismatch) // counted after the commit: a retried transaction counts once
			h.Log.WarnContext(ctx, "payment does not match its order; refund asked for", "event", a.ev.ID, "order", a.p.OrderID,
				"payment", a.p.PaymentID, "reason", a.outcome.Mismatch, "amount_minor", a.p.AmountMinor, "currency", a.p.Currency)
		}
		h.Log.InfoContext(ctx, "payment event handled", "event", a.ev.ID, "type", a.ev.Type, "order", a.p.OrderID,
			"payment", a.p.PaymentID, "outcome", a.outcome.Result)
	}
	return nil
}

// apply applies one payment outcome in tx.
func (h *Payments) apply(ctx context.Context, tx pgx.Tx, a *applied) error {
	var err error
	a.outcome, err = h.Applier.ApplyPayment(ctx, tx, a.ev, ordersvc.PaymentEvent{OrderID: a.p.OrderID, PaymentID: a.p.PaymentID,
		Succeeded: a.ev.Type == paymentsapi.EventPaymentSucceeded, AmountMinor: a.p.AmountMinor, Currency: a.p.Currency, Reason: a.p.Reason})
	switch {
	case errors.Is(err, order.ErrNotFound):
		return stream.Permanent(fmt.Errorf("%s %s: %w", a.ev.Type, a.ev.ID, err))
	case pgdb.IsCode(err, "22P02"): // invalid_text_representation: order id is not a uuid
		return stream.Permanent(fmt.Errorf("%s %s: order id %q: %w", a.ev.Type, a.ev.ID, a.p.OrderID, err))
	case err != nil:
		return fmt.Errorf("%s %s: %w", a.ev.Type, a.ev.ID, err)
	}
	return nil
}

// decode reads the payment outcome a delivery carries, nil for an event
// orders does not act on, or a Permanent error for poison.
func decode(d stream.Delivery) (*applied, error) {
	ev, err := events.Unmarshal(d.Payload)
	if err != nil {
		return nil, stream.Permanent(fmt.Errorf("unreadable event: %w", err))
	}
	if err := events.Readable(ev, paymentSchemas); err != nil {
		return nil, stream.Permanent(err)
	}
	if ev.Type != paymentsapi.EventPaymentSucceeded && ev.Type != paymentsapi.EventPaymentFailed {
		return nil, nil
	}
	var p paymentsapi.PaymentResult
	if err := ev.DecodeData(&p); err != nil || p.OrderID == "" || p.PaymentID == "" {
		return nil, stream.Permanent(fmt.Errorf("%s %s: bad payload: %w", ev.Type, ev.ID, errors.Join(err, errors.New("order_id and payment_id are required"))))
	}
	return &applied{ev: ev, p: p}, nil
}
