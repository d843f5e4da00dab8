package orderstream_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/services/orders/internal/order"
	"github.com/shopfloor/shopfloor/services/orders/internal/orderpg"
	"github.com/shopfloor/shopfloor/services/orders/internal/orderstream"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// succeeded is a payment.succeeded for payment payID of order orderID,
// charged amount in currency.
func succeeded(t *testing.T, orderID, payID string, amount int64, currency string) events.Envelope {
	t.Helper()
	ev, err := events.New(paymentsapi.Source, paymentsapi.EventPaymentSucceeded, orderID, 1, 2, paymentsapi.PaymentResult{
		PaymentID: payID, OrderID: orderID, AmountMinor: amount, Currency: currency, ChargeID: "ch_" + payID}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// payloads decodes the data of the order's outbox events of type typ, in
// commit order.
func payloads[T any](t *testing.T, b *bundle, orderID, typ string) []T {
	t.Helper()
	rows, err := b.db.Pool.Query(context.Background(), `SELECT payload FROM outbox WHERE key = $1 AND event_type = $2 ORDER BY id`, orderID, typ)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatal(err)
	}
	out := make([]T, len(raw))
	for i, r := range raw {
		ev, err := events.Unmarshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := ev.DecodeData(&out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestMismatchedPaymentLeavesTheOrderUnpaidAndAsksOnceForARefund: DESIGN.md invariant 8, an order is paid only by a
// payment of its own amount and currency. A payment.succeeded of another
// amount or currency leaves the order unpaid (payment_failed, with the
// mismatch as the reason), asks once for that payment's refund
// (order.refund_required with the reason, in the inbox claim's
// transaction), and counts once in orders_payment_mismatches_total,
// however often the payment is reported. A matching payment still pays.
func TestMismatchedPaymentLeavesTheOrderUnpaidAndAsksOnceForARefund(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// newOrder's orders cost 1000 EUR.
	cases := []struct {
		name     string
		from     order.Status
		amount   int64
		currency string
		want     order.Status
		reason   string // "" for a match
		events   string
	}{
		{"match", order.PendingPayment, 1000, "EUR", order.Paid, "", "order.paid"},
		{"amount too low", order.PendingPayment, 999, "EUR", order.PaymentFailed, ordersapi.ReasonAmountMismatch, "order.payment_failed,order.refund_required"},
		{"amount too high", order.PendingPayment, 100_000, "EUR", order.PaymentFailed, ordersapi.ReasonAmountMismatch, "order.payment_failed,order.refund_required"},
		{"currency", order.PendingPayment, 1000, "USD", order.PaymentFailed, ordersapi.ReasonCurrencyMismatch, "order.payment_failed,order.refund_required"},
		{"currency and amount", order.PendingPayment, 5, "GBP", order.PaymentFailed, ordersapi.ReasonCurrencyMismatch, "order.payment_failed,order.refund_required"},
		// Cancelled while a wrong payment was in flight: stays cancelled;
		// the refund names the mismatch.
		{"cancelled, amount", order.Cancelled, 999, "EUR", order.Cancelled, ordersapi.ReasonAmountMismatch, "order.cancelled,order.refund_required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			reg := prometheus.NewRegistry()
			metrics, err := orderstream.NewMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			h := &orderstream.Payments{Pool: b.db.Pool, Applier: b.svc, Log: slog.New(slog.DiscardHandler), Metrics: metrics}
			id := b.newOrder(t, tc.from, "")
			payID := "p1-" + id
			ev := succeeded(t, id, payID, tc.amount, tc.currency)
			// The event, a redelivery of it, and another event reporting
			// the same payment (a replay after a reconciliation).
			for _, e := range []events.Envelope{ev, ev, succeeded(t, id, payID, tc.amount, tc.currency)} {
				if err := h.Handle(ctx, deliveryOf(t, e)); err != nil {
					t.Fatal(err)
				}
			}
			status, _, evs := b.state(t, id)
			if status != tc.want || strings.Join(evs, ",") != tc.events {
				t.Fatalf("order %s, events %v; want %s, %s", status, evs, tc.want, tc.events)
			}
			o, err := orderpg.Get(ctx, b.db.Pool, id, false)
			if err != nil {
				t.Fatal(err)
			}
			if tc.reason == "" {
				if o.PaymentID != payID {
					t.Fatalf("paid by %q, want %q", o.PaymentID, payID)
				}
			} else {
				rrs := payloads[ordersapi.RefundRequired](t, b, id, ordersapi.EventOrderRefundRequired)
				if len(rrs) != 1 {
					t.Fatalf("%d order.refund_required, want 1", len(rrs))
				}
				rr := rrs[0]
				if rr.Reason != tc.reason || rr.PaymentID != payID || rr.AmountMinor != tc.amount || rr.Currency != tc.currency ||
					rr.Status != string(tc.want) || rr.Version != o.Version {
					t.Fatalf("order.refund_required %+v, want reason %s for %d %s", rr, tc.reason, tc.amount, tc.currency)
				}
				if tc.from == order.PendingPayment {
					failed := payloads[ordersapi.OrderStatusChanged](t, b, id, ordersapi.EventOrderPaymentFailed)
					if len(failed) != 1 || failed[0].Reason != tc.reason || failed[0].PaymentID != payID || o.PaymentID != payID {
						t.Fatalf("order.payment_failed %+v, order's payment %q", failed, o.PaymentID)
					}
				}
			}
			// What was recorded: the first event's outcome, then ignored.
			recorded, err := orderpg.PaymentEvents(ctx, b.db.Pool, id)
			if err != nil {
				t.Fatal(err)
			}
			var outcomes []string
			for _, r := range recorded {
				if r.PaymentID == payID {
					outcomes = append(outcomes, r.Outcome)
				}
			}
			first := orderpg.OutcomeApplied
			if tc.reason != "" {
				first = orderpg.OutcomeRefundRequired
			}
			if strings.Join(outcomes, ",") != first+","+orderpg.OutcomeIgnored {
				t.Fatalf("recorded outcomes %v, want %s then ignored", outcomes, first)
			}
			for _, r := range []string{ordersapi.ReasonAmountMismatch, ordersapi.ReasonCurrencyMismatch} {
				want := 0.0
				if r == tc.reason {
					want = 1
				}
				if got := metric(t, reg, "orders_payment_mismatches_total", r); got != want {
					t.Errorf("orders_payment_mismatches_total{reason=%q} = %v, want %v", r, got, want)
				}
			}
		})
	}
}
