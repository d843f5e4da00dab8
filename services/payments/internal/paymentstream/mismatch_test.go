package paymentstream_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentstream"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentsvc"
	"github.com/shopfloor/shopfloor/services/payments/internal/psp"
	"github.com/shopfloor/shopfloor/services/payments/migrations"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
	"github.com/shopfloor/shopfloor/services/payments/pspsim"
)

// TestMismatchedPaymentIsRefunded follows payments' half of ADR 0010's
// "Mismatched payments" end to end: an order's payment of another amount
// than its total (an operator's API payment made before order.placed
// arrived; order.placed then creates nothing) is charged; orders answers
// its payment.succeeded with order.refund_required, reason
// amount_mismatch; the ORDERS consumer turns that into one refund (however
// often it is delivered or reported), the worker refunds the whole charge
// at the provider, the payment becomes refunded and payment.refunded is
// written.
func TestMismatchedPaymentIsRefunded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations.FS)
	sim, err := pspsim.New(pspsim.Config{Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	client, err := psp.New(psp.Config{BaseURL: srv.URL, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := jobqueue.New(db.Pool, jobqueue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jobs.Close)
	log := slog.New(slog.DiscardHandler)
	svc, err := paymentsvc.New(db.Pool, jobs, outbox.New(paymentsapi.Stream), client, paymentsvc.Config{}, log, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.CreateQueues(ctx); err != nil {
		t.Fatal(err)
	}
	workCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for q, handle := range map[string]jobqueue.Handler{paymentsvc.ChargeQueue: svc.HandleCharge, paymentsvc.RefundQueue: svc.HandleRefund} {
		w := jobs.NewWorker(jobqueue.WorkerConfig{Queue: q, Concurrency: 1, VisibilityTimeout: 5 * time.Second,
			Backoff: backoff.Policy{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond, Multiplier: 2}}, handle)
		wg.Go(func() {
			if err := w.Run(workCtx); err != nil {
				t.Errorf("worker %s: %v", q, err)
			}
		})
	}
	t.Cleanup(func() { stop(); wg.Wait() })
	h := &paymentstream.Orders{Pool: db.Pool, Svc: svc, DefaultPaymentMethod: "tok_visa", Log: log}

	orderID := uuid.Must(uuid.NewV7()).String()
	if err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
		_, err := svc.Create(ctx, tx, "api:sub:oscar:k1", paymentsvc.CreateInput{CreatePayment: paymentsapi.CreatePayment{OrderID: orderID, AmountMinor: 999, Currency: "EUR", PaymentMethod: "tok_visa"}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := h.Handle(ctx, delivery(t, ordersapi.EventOrderPlaced, orderID, ordersapi.OrderPlaced{OrderID: orderID, Currency: "EUR", TotalMinor: 1000})); err != nil {
		t.Fatal(err)
	}
	waitFor := func(status string) paymentsapi.Payment {
		t.Helper()
		var got paymentsapi.Payment
		testinfra.Eventually(t, 30*time.Second, func() error {
			p, err := svc.GetByOrder(ctx, orderID, "")
			if err != nil {
				return err
			}
			if got = p.API(); got.Status != status {
				return fmt.Errorf("payment is %s, want %s", got.Status, status)
			}
			return nil
		})
		return got
	}
	charged := waitFor(paymentsapi.StatusSucceeded)
	if charged.AmountMinor != 999 || charged.ChargeID == "" || sim.Stats().ChargesCreated != 1 {
		t.Fatalf("charged %+v, provider %+v", charged, sim.Stats())
	}

	// orders' answer (ordersvc.ApplyPayment): the payment's amount and
	// currency, the order's status after it, the reason. Delivered twice
	// and reported by a second event: one refund.
	rr := ordersapi.RefundRequired{OrderID: orderID, PaymentID: charged.ID, AmountMinor: 999, Currency: "EUR",
		Status: ordersapi.StatusPaymentFailed, Version: 2, Reason: ordersapi.ReasonAmountMismatch}
	first := delivery(t, ordersapi.EventOrderRefundRequired, orderID, rr)
	for _, d := range []stream.Delivery{first, first, delivery(t, ordersapi.EventOrderRefundRequired, orderID, rr)} {
		if err := h.Handle(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	refunded := waitFor(paymentsapi.StatusRefunded)
	st := sim.Stats()
	if refunded.RefundedMinor != 999 || st.RefundsCreated != 1 || st.RefundedByCharge[charged.ChargeID] != 999 {
		t.Fatalf("after the refund: %+v, provider %+v", refunded, st)
	}
	var evs []string
	rows, err := db.Pool.Query(ctx, `SELECT event_type FROM outbox WHERE key = $1 ORDER BY id`, orderID)
	if err == nil {
		evs, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil || len(evs) != 2 || evs[0] != paymentsapi.EventPaymentSucceeded || evs[1] != paymentsapi.EventPaymentRefunded {
		t.Fatalf("PAYMENTS events %v (%v), want payment.succeeded, payment.refunded", evs, err)
	}
	var refunds int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM refunds WHERE payment_id = $1`, charged.ID).Scan(&refunds); err != nil || refunds != 1 {
		t.Fatalf("%d refunds (%v), want 1", refunds, err)
	}
}
