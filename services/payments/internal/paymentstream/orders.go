// Package paymentstream holds payments' consumer of the ORDERS stream
// (group "payments"): order.placed creates the order's payment attempt and
// its charge job; order.refund_required creates the refund and its job.
//
// The attempt records the order's customer (order.placed's customer_id),
// so that the customer can read their payment (ADR 0022); an attempt an
// operator created through the API before order.placed arrived gets the
// customer then.
//
// Replay-safe: the inbox claim (inbox.ApplyBatch), the attempt (unique
// per order, key order:<order id>) and the job commit in one transaction
// (one per batch of a partition's events), so a
// redelivery or a replay of the whole stream creates nothing new and never
// charges twice; a replay only fills in a customer that is missing, never
// changes one.
package paymentstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/inbox"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/internal/payment"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentsvc"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// Group is payments' consumer group on ORDERS.
const Group = "payments"

// Orders handles ORDERS deliveries.
type Orders struct {
	Pool *pgxpool.Pool
	Svc  *paymentsvc.Service
	// DefaultPaymentMethod charges orders placed without a payment method
	// token (the sandbox's test card).
	DefaultPaymentMethod string
	Log                  *slog.Logger
}

// orderSchemas are the ORDERS schemas this build reads
// (events.Readable: an unknown schemaversion is poison).
var orderSchemas = ordersapi.Schemas()

// Handle is the stream.Handler: HandleBatch of one delivery.
func (h *Orders) Handle(ctx context.Context, d stream.Delivery) error {
	return h.HandleBatch(ctx, []stream.Delivery{d})
}

// HandleBatch is the stream.BatchHandler: the payment attempts and
// refunds of every event in ds, their jobs and their inbox claims commit
// in one transaction (inbox.ApplyBatch), in stream order. Unreadable
// events, schema versions this build does not know and payloads that
// cannot be charged are poison (stream.Permanent: a batch that holds one
// fails, the group hands its events over one at a time, and the poison
// one is dead-lettered alone); database errors are retried; other event
// types are acknowledged untouched.
func (h *Orders) HandleBatch(ctx context.Context, ds []stream.Delivery) error {
	effects := make([]inbox.Effect, 0, len(ds))
	for _, d := range ds {
		e, err := h.effect(d)
		if err != nil {
			return err
		}
		if e.Apply != nil {
			effects = append(effects, e)
		}
	}
	_, err := inbox.ApplyBatch(ctx, h.Pool, Group, effects)
	return err
}

// effect reads what a delivery asks of payments: an inbox.Effect, one
// without Apply for an event that asks nothing, or a Permanent error for
// poison.
func (h *Orders) effect(d stream.Delivery) (inbox.Effect, error) {
	ev, err := events.Unmarshal(d.Payload)
	if err != nil {
		return inbox.Effect{}, stream.Permanent(fmt.Errorf("unreadable event: %w", err))
	}
	if err := events.Readable(ev, orderSchemas); err != nil {
		return inbox.Effect{}, stream.Permanent(err)
	}
	var apply func(ctx context.Context, tx pgx.Tx) error
	switch ev.Type {
	case ordersapi.EventOrderPlaced:
		var op ordersapi.OrderPlaced
		if err := ev.DecodeData(&op); err != nil {
			return inbox.Effect{}, stream.Permanent(fmt.Errorf("%s %s: %w", ev.Type, ev.ID, err))
		}
		in := paymentsvc.CreateInput{CreatePayment: paymentsapi.CreatePayment{OrderID: op.OrderID, AmountMinor: op.TotalMinor,
			Currency: op.Currency, PaymentMethod: op.PaymentMethod}, CustomerID: op.CustomerID}
		if in.PaymentMethod == "" {
			in.PaymentMethod = h.DefaultPaymentMethod
		}
		if err := payment.Validate(in.CreatePayment); err != nil {
			return inbox.Effect{}, stream.Permanent(fmt.Errorf("%s %s: %w", ev.Type, ev.ID, err))
		}
		apply = func(ctx context.Context, tx pgx.Tx) error {
			_, err := h.Svc.Create(ctx, tx, "order:"+op.OrderID, in)
			if errors.Is(err, payment.ErrExists) {
				return nil // the API (or an earlier event) created it; Create recorded the customer if it had none
			}
			return err
		}
	case ordersapi.EventOrderRefundRequired:
		var rr ordersapi.RefundRequired
		if err := ev.DecodeData(&rr); err != nil || rr.PaymentID == "" {
			return inbox.Effect{}, stream.Permanent(fmt.Errorf("%s %s: bad payload: %w", ev.Type, ev.ID, errors.Join(err, errors.New("payment_id is required"))))
		}
		apply = func(ctx context.Context, tx pgx.Tx) error {
			_, err := h.Svc.RequestRefund(ctx, tx, rr)
			return err
		}
	default:
		return inbox.Effect{}, nil
	}
	return inbox.Effect{ID: ev.ID, Apply: func(ctx context.Context, tx pgx.Tx) error {
		err := apply(ctx, tx)
		if errors.Is(err, payment.ErrNotFound) {
			return stream.Permanent(fmt.Errorf("%s %s: %w", ev.Type, ev.ID, err))
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", ev.Type, ev.ID, err)
		}
		return nil
	}}, nil
}
