package paymentsvc_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/pkg/audit"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/internal/payment"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentsvc"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
	"github.com/shopfloor/shopfloor/services/payments/pspsim"
)

// TestExhaustedChargesAreReconciledWithoutAPerson: the provider fails most
// requests, and half of the charges it does make lose their answer, so
// attempts run out of deliveries with their outcome unknown. None of them
// is declared failed: each stays pending, owned by the reconciler, with
// no event and nothing in the DLQ. While the provider stays away the
// reconciler's lookups fail and it settles nothing (no guess). Once the
// provider is back, every charge it made is recorded succeeded
// (payment.succeeded, the only event of that payment) and every attempt it
// never charged failed (payment.failed, retries_exhausted), without a
// person and without a new charge.
func TestExhaustedChargesAreReconciledWithoutAPerson(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, pspsim.Faults{TimeoutAfterChargeRate: 0.5, ErrorRate: 0.6, Hang: 5 * time.Second},
		paymentsvc.Config{MaxReceives: 3, ReconcileGrace: 300 * time.Millisecond})
	var ps []payment.Payment
	for range 30 {
		ps = append(ps, b.create(t, "tok_visa"))
	}
	b.work(t, 8)
	testinfra.Eventually(t, 2*time.Minute, func() error {
		if n := b.count(t, `SELECT count(*) FROM jobqueue_messages WHERE queue = 'charges'`); n > 0 {
			return fmt.Errorf("%d charge jobs left", n)
		}
		return nil
	})
	unknown := b.count(t, `SELECT count(*) FROM payments WHERE status = 'pending' AND outcome_unknown_since IS NOT NULL`)
	if unknown == 0 {
		t.Fatal("no attempt ran out of deliveries; raise the fault rates")
	}
	if n := b.count(t, `SELECT count(*) FROM jobqueue_messages WHERE queue = 'charges-dlq'`); n != 0 {
		t.Fatalf("%d charges in the DLQ: an unknown outcome waits on a person", n)
	}
	evs := b.eventsOf(t)
	for _, p := range ps {
		got, _ := b.svc.Get(ctx, p.ID, "")
		if got.Status == paymentsapi.StatusPending && len(evs[p.OrderID]) != 0 {
			t.Fatalf("payment %s with an unknown outcome has events %v", p.ID, evs[p.OrderID])
		}
	}

	rec, err := b.svc.NewReconciler(paymentsvc.ReconcileConfig{Interval: 50 * time.Millisecond, Grace: 300 * time.Millisecond, RetryMax: 100 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The provider still away: lookups fail, nothing is settled.
	if err := b.sim.SetFaults(pspsim.Faults{Down: true}); err != nil {
		t.Fatal(err)
	}
	// The grace period has passed (moved back in the rows rather than
	// waited for), and each pass finds the payments due.
	b.exec(t, `UPDATE payments SET outcome_unknown_since = outcome_unknown_since - interval '1 second' WHERE status = 'pending'`)
	for range 3 {
		b.exec(t, `UPDATE payments SET reconcile_after = now() WHERE status = 'pending'`)
		if n, err := rec.Pass(ctx); err != nil || n != 0 {
			t.Fatalf("pass while the provider is down: settled %d, %v", n, err)
		}
	}
	if n := b.count(t, `SELECT count(*) FROM payments WHERE status = 'pending' AND reconcile_attempts = 3 AND reconcile_error <> ''`); n != unknown {
		t.Fatalf("%d of %d unknown payments counted 3 failed lookups", n, unknown)
	}

	before := b.sim.Stats()
	if err := b.sim.SetFaults(pspsim.Faults{}); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	reconCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rec.Run(reconCtx) }()
	b.settled(t, time.Minute)
	took := time.Since(healed)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	after := b.sim.Stats()
	if after.ChargesCreated != before.ChargesCreated || len(after.DoubleCharges) != 0 {
		t.Fatalf("reconciliation charged anew: %d → %d charges, doubles %v", before.ChargesCreated, after.ChargesCreated, after.DoubleCharges)
	}
	evs = b.eventsOf(t)
	var charged, never int
	for _, p := range ps {
		got, err := b.svc.Get(ctx, p.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		want, typ := paymentsapi.StatusFailed, paymentsapi.EventPaymentFailed
		if after.SucceededByReference[p.OrderID] == 1 {
			want, typ = paymentsapi.StatusSucceeded, paymentsapi.EventPaymentSucceeded
		}
		if got.Status != want || len(evs[p.OrderID]) != 1 || evs[p.OrderID][0] != typ {
			t.Fatalf("payment %s: %s with events %v; the provider says %s", p.ID, got.Status, evs[p.OrderID], want)
		}
		if got.FailureReason == paymentsapi.ReasonRetriesExhausted {
			never++
		} else if want == paymentsapi.StatusSucceeded {
			charged++
		}
	}
	if n := b.count(t, `SELECT count(*) FROM jobqueue_messages WHERE queue = 'charges-dlq'`); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
	t.Logf("%d payments, %d with an unknown outcome: reconciled %s after the provider came back (grace 300ms); provider charges unchanged at %d; %d found charged, %d never charged → failed",
		len(ps), unknown, took.Round(time.Millisecond), after.ChargesCreated, charged, never)
}

// TestRefundIsRetriedUntilDoneOrAbandoned: with the provider away, a refund
// is retried far past the queues' MaxReceives and never dead-lettered; an
// operator may abandon one, with a reason (recorded in the audit log, in
// the same transaction), and its job then ends as a no-op; the other is
// refunded once the provider is back.
func TestRefundIsRetriedUntilDoneOrAbandoned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, pspsim.Faults{}, paymentsvc.Config{MaxReceives: 3, RefundRetryMax: 30 * time.Millisecond})
	b.work(t, 4)
	keep, drop := b.create(t, "tok_visa"), b.create(t, "tok_visa")
	b.settled(t, 30*time.Second)
	if err := b.sim.SetFaults(pspsim.Faults{Down: true}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []payment.Payment{keep, drop} {
		if err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
			_, err := b.svc.RequestRefund(ctx, tx, ordersapi.RefundRequired{OrderID: p.OrderID, PaymentID: p.ID, AmountMinor: p.AmountMinor,
				Currency: p.Currency, Reason: ordersapi.ReasonOrderNotPayable})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	testinfra.Eventually(t, time.Minute, func() error {
		if n := b.count(t, `SELECT coalesce(min(receive_count), 0) FROM jobqueue_messages WHERE queue = 'refunds'`); n < 3*b.cfg.MaxReceives {
			return fmt.Errorf("refund jobs received at least %d times, want %d", n, 3*b.cfg.MaxReceives)
		}
		return nil
	})
	if n := b.count(t, `SELECT count(*) FROM refunds WHERE status = 'pending'`); n != 2 {
		t.Fatalf("%d refunds pending after %d+ attempts each, want 2 (retried until done)", n, 3*b.cfg.MaxReceives)
	}
	if n := b.count(t, `SELECT count(*) FROM jobqueue_messages WHERE queue = 'refunds-dlq'`); n != 0 {
		t.Fatalf("%d refunds dead-lettered while the provider was merely away", n)
	}

	var refundID string
	if err := b.db.Pool.QueryRow(ctx, `SELECT id::text FROM refunds WHERE payment_id = $1`, drop.ID).Scan(&refundID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.AbandonRefund(ctx, refundID, "oscar", " "); !errors.Is(err, audit.ErrInvalid) {
		t.Fatalf("abandon without a reason: %v, want audit.ErrInvalid", err)
	}
	r, err := b.svc.AbandonRefund(ctx, refundID, "oscar", "customer refunded by bank transfer, ticket 4711")
	if err != nil || r.Status != "abandoned" {
		t.Fatalf("abandon: %+v, %v", r, err)
	}
	if _, err := b.svc.AbandonRefund(ctx, refundID, "oscar", "again"); !errors.Is(err, paymentsvc.ErrRefundClosed) {
		t.Fatalf("abandon twice: %v, want ErrRefundClosed", err)
	}
	entries, err := audit.List(ctx, b.db.Pool, "refund.", 10)
	if err != nil || len(entries) != 1 || entries[0].Actor != "oscar" || entries[0].Target != "refund "+refundID ||
		entries[0].Reason != "customer refunded by bank transfer, ticket 4711" || entries[0].Detail["payment_id"] != drop.ID {
		t.Fatalf("audit log: %+v, %v", entries, err)
	}

	if err := b.sim.SetFaults(pspsim.Faults{}); err != nil {
		t.Fatal(err)
	}
	b.settled(t, 30*time.Second)
	testinfra.Eventually(t, 30*time.Second, func() error {
		if n := b.count(t, `SELECT count(*) FROM jobqueue_messages WHERE queue IN ('refunds', 'refunds-dlq')`); n != 0 {
			return fmt.Errorf("%d refund jobs left", n)
		}
		return nil
	})
	kept, _ := b.svc.Get(ctx, keep.ID, "")
	dropped, _ := b.svc.Get(ctx, drop.ID, "")
	st := b.sim.Stats()
	if kept.Status != paymentsapi.StatusRefunded || dropped.Status != paymentsapi.StatusSucceeded || st.RefundsCreated != 1 ||
		st.RefundedByCharge[dropped.ChargeID] != 0 {
		t.Fatalf("kept %s, abandoned %s, provider refunds %d (%v)", kept.Status, dropped.Status, st.RefundsCreated, st.RefundedByCharge)
	}
}

func (b *bundle) count(t *testing.T, sql string) int {
	t.Helper()
	var n int
	if err := b.db.Pool.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (b *bundle) exec(t *testing.T, sql string) {
	t.Helper()
	if _, err := b.db.Pool.Exec(context.Background(), sql); err != nil {
		t.Fatal(err)
	}
}
