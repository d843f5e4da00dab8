// Package orderstream holds orders' consumer of the PAYMENTS stream: it
// moves orders to paid or payment_failed, and asks for refunds of payments
// an order cannot take, including a payment whose amount or currency is
// not the order's total (never applied; counted in
// orders_payment_mismatches_total).
//
// Replay-safe: each event is applied through the inbox (inbox.Apply: the
// claim commits in the same transaction as the effect), so a redelivery,
// a redrive or a replay of the stream changes nothing. Per order in order:
// PAYMENTS is keyed by order id and the group processes a partition one
// message at a time.
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

// Handle is the stream.Handler. Events other than payment.succeeded and
// payment.failed are acknowledged untouched; an unreadable event, a bad
// payload or an unknown order is poison (stream.Permanent: dead-lettered);
// database errors are retried.
func (h *Payments) Handle(ctx context.Context, d stream.Delivery) error {
	ev, err := events.Unmarshal(d.Payload)
	if err != nil {
		return stream.Permanent(fmt.Errorf("unreadable event: %w", err))
	}
	if err := events.Readable(ev, paymentSchemas); err != nil {
		return stream.Permanent(err)
	}
	if ev.Type != paymentsapi.EventPaymentSucceeded && ev.Type != paymentsapi.EventPaymentFailed {
		return nil // not ours to act on (payment.refunded, newer types)
	}
	var p paymentsapi.PaymentResult
	if err := ev.DecodeData(&p); err != nil || p.OrderID == "" || p.PaymentID == "" {
		return stream.Permanent(fmt.Errorf("%s %s: bad payload: %w", ev.Type, ev.ID, errors.Join(err, errors.New("order_id and payment_id are required"))))
	}
	var outcome ordersvc.PaymentOutcome
	err = pgdb.InTx(ctx, h.Pool, func(tx pgx.Tx) error {
		applied, err := inbox.Apply(ctx, tx, Group, ev.ID, func(ctx context.Context, tx pgx.Tx) error {
			var err error
			outcome, err = h.Applier.ApplyPayment(ctx, tx, ev, ordersvc.PaymentEvent{OrderID: p.OrderID, PaymentID: p.PaymentID,
				Succeeded: ev.Type == paymentsapi.EventPaymentSucceeded, AmountMinor: p.AmountMinor, Currency: p.Currency, Reason: p.Reason})
			return err
		})
		if err == nil && !applied {
			outcome = ordersvc.PaymentOutcome{Result: "duplicate"}
		}
		return err
	})
	switch {
	case errors.Is(err, order.ErrNotFound):
		return stream.Permanent(fmt.Errorf("%s %s: %w", ev.Type, ev.ID, err))
	case pgdb.IsCode(err, "22P02"): // invalid_text_representation: order id is not a uuid
		return stream.Permanent(fmt.Errorf("%s %s: order id %q: %w", ev.Type, ev.ID, p.OrderID, err))
	case err != nil:
		return fmt.Errorf("%s %s: %w", ev.Type, ev.ID, err)
	}
	if outcome.Mismatch != "" {
		h.Metrics.mismatch(outcome.Mismatch) // counted after the commit: a retried transaction counts once
		h.Log.WarnContext(ctx, "payment does not match its order; refund asked for", "event", ev.ID, "order", p.OrderID,
			"payment", p.PaymentID, "reason", outcome.Mismatch, "amount_minor", p.AmountMinor, "currency", p.Currency)
	}
	h.Log.InfoContext(ctx, "payment event handled", "event", ev.ID, "type", ev.Type, "order", p.OrderID,
		"payment", p.PaymentID, "outcome", outcome.Result)
	return nil
}
