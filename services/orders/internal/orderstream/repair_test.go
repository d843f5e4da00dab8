package orderstream_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/services/orders/internal/order"
	"github.com/shopfloor/shopfloor/services/orders/internal/ordersvc"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// fakePayments stands for payments' API (another service) by order id.
type fakePayments map[string]any // paymentsapi.Payment or error

func (f fakePayments) OrderPayment(_ context.Context, orderID string) (paymentsapi.Payment, error) {
	switch v := f[orderID].(type) {
	case paymentsapi.Payment:
		return v, nil
	case error:
		return paymentsapi.Payment{}, v
	}
	return paymentsapi.Payment{}, paymentsapi.ErrNoPayment
}

// TestStuckOrdersAreRepairedFromPayments: orders pending_payment past the
// bound are repaired from payments' state without a person: a succeeded
// payment pays the order, a failed one fails it, a pending one is left to
// payments' reconciler, an order payments has no payment for gets its
// order.placed published again, and payments not answering is retried
// later. An order pending for less than the bound is not touched. The
// payment event that arrives after a repair changes nothing.
func TestStuckOrdersAreRepairedFromPayments(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	paid, failed, pending, lost, unreachable := b.newOrder(t, order.PendingPayment, ""), b.newOrder(t, order.PendingPayment, ""),
		b.newOrder(t, order.PendingPayment, ""), b.newOrder(t, order.PendingPayment, ""), b.newOrder(t, order.PendingPayment, "")
	if _, err := b.db.Pool.Exec(ctx, `UPDATE orders SET updated_at = now() - interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	fresh := b.newOrder(t, order.PendingPayment, "")
	// lost's order.placed went out (and payments dead-lettered it).
	placed, err := events.New(ordersapi.Source, ordersapi.EventOrderPlaced, lost, 1, 1, map[string]string{"order_id": lost}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error { return outbox.New(ordersapi.Stream).Publish(ctx, tx, placed) }); err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.Pool.Exec(ctx, `UPDATE outbox SET published_at = now() WHERE key = $1`, lost); err != nil {
		t.Fatal(err)
	}
	pays := fakePayments{
		paid:        paymentsapi.Payment{ID: "pay-" + paid, OrderID: paid, Status: paymentsapi.StatusSucceeded, AmountMinor: 1000, Currency: "EUR", ChargeID: "ch_1"},
		failed:      paymentsapi.Payment{ID: "pay-" + failed, OrderID: failed, Status: paymentsapi.StatusFailed, AmountMinor: 1000, Currency: "EUR", DeclineCode: "card_declined"},
		pending:     paymentsapi.Payment{ID: "pay-" + pending, OrderID: pending, Status: paymentsapi.StatusPending, AmountMinor: 1000, Currency: "EUR"},
		unreachable: errors.New("payments answered 503"),
		fresh:       paymentsapi.Payment{ID: "pay-" + fresh, OrderID: fresh, Status: paymentsapi.StatusSucceeded, AmountMinor: 1000, Currency: "EUR"},
	}
	reg := prometheus.NewRegistry()
	rep, err := b.svc.NewRepairer(pays, ordersvc.RepairConfig{StuckAfter: 15 * time.Minute}, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	n, err := rep.Pass(ctx)
	if err != nil || n != 2 {
		t.Fatalf("first pass repaired %d (%v), want 2", n, err)
	}
	if got := metric(t, reg, "orders_stuck", "pending_payment"); got != 5 {
		t.Fatalf("orders_stuck = %v, want 5", got)
	}
	for id, want := range map[string]order.Status{paid: order.Paid, failed: order.PaymentFailed, pending: order.PendingPayment,
		lost: order.PendingPayment, unreachable: order.PendingPayment, fresh: order.PendingPayment} {
		if st, _, _ := b.state(t, id); st != want {
			t.Errorf("order %s: %s, want %s", id, st, want)
		}
	}
	var republished bool
	attempts := map[string]int{}
	if err := b.db.Pool.QueryRow(ctx, `SELECT published_at IS NULL FROM outbox WHERE key = $1 AND event_type = 'order.placed'`, lost).Scan(&republished); err != nil || !republished {
		t.Fatalf("order.placed of the order without a payment not queued again: %v", err)
	}
	rows, _ := b.db.Pool.Query(ctx, `SELECT id::text, repair_attempts FROM orders`)
	for rows.Next() {
		var id string
		var a int
		_ = rows.Scan(&id, &a)
		attempts[id] = a
	}
	if attempts[lost] != 1 || attempts[unreachable] != 1 || attempts[pending] != 0 || attempts[fresh] != 0 {
		t.Fatalf("repair attempts: %v", attempts)
	}
	for o, c := range map[string]float64{ordersvc.RepairPaid: 1, ordersvc.RepairFailed: 1, ordersvc.RepairWaiting: 1,
		ordersvc.RepairRepublished: 1, ordersvc.RepairUnreachable: 1} {
		if got := metric(t, reg, "orders_stuck_repaired_total", o); got != c {
			t.Errorf("orders_stuck_repaired_total{outcome=%q} = %v, want %v", o, got, c)
		}
	}

	// The next pass looks at nothing (each has its next look later) and
	// counts what is still stuck.
	if n, err := rep.Pass(ctx); err != nil || n != 0 {
		t.Fatalf("second pass: %d, %v", n, err)
	}
	if got := metric(t, reg, "orders_stuck", "pending_payment"); got != 3 {
		t.Fatalf("orders_stuck after the repairs = %v, want 3", got)
	}

	// payment.succeeded of the repaired order arrives late: ignored.
	_, v0, evs0 := b.state(t, paid)
	if err := b.h.Handle(ctx, delivery(t, paymentsapi.EventPaymentSucceeded, paid, "pay-"+paid)); err != nil {
		t.Fatal(err)
	}
	st, v1, evs1 := b.state(t, paid)
	if st != order.Paid || v1 != v0 || len(evs1) != len(evs0) {
		t.Fatalf("late event after the repair: %s v%d→v%d, events %v→%v", st, v0, v1, evs0, evs1)
	}
}

// metric is the value of the series name{labelValue} (any label name;
// "" for a series without labels) in reg.
func metric(t *testing.T, reg *prometheus.Registry, name, labelValue string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelValue != "" && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != labelValue) {
				continue
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no series %s{%s}", name, labelValue)
	return 0
}
