package paymentpg_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/payments/internal/payment"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentpg"
	"github.com/shopfloor/shopfloor/services/payments/migrations"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// The payment's life after Insert: its outcome, its refund, its provider
// calls and the reconciler's claims, each against payments' real
// migrations.

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func newID() string { return uuid.Must(uuid.NewV7()).String() }

func setup(t *testing.T) *pgxpool.Pool {
	t.Helper()
	return testinfra.Postgres(t, migrations.FS).Pool
}

func inTx(db *pgxpool.Pool, fn func(tx pgx.Tx) error) error {
	return pgdb.InTx(context.Background(), db, fn)
}

// stored inserts a pending payment created at created.
func stored(t *testing.T, db *pgxpool.Pool, created time.Time) payment.Payment {
	t.Helper()
	p := newPayment("c1")
	p.CreatedAt, p.UpdatedAt = created, created
	if err := inTx(db, func(tx pgx.Tx) error { _, err := paymentpg.Insert(context.Background(), tx, p); return err }); err != nil {
		t.Fatal(err)
	}
	return p
}

func read(t *testing.T, db *pgxpool.Pool, id string) payment.Payment {
	t.Helper()
	p, err := paymentpg.Get(context.Background(), db, id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGetReturnsNotFoundForAnUnknownOrMalformedID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := setup(t)
	for _, id := range []string{newID(), "42"} {
		if _, err := paymentpg.Get(ctx, db, id); !errors.Is(err, payment.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want payment.ErrNotFound", id, err)
		}
		if _, err := paymentpg.GetByOrder(ctx, db, id); !errors.Is(err, payment.ErrNotFound) {
			t.Errorf("GetByOrder(%q) = %v, want payment.ErrNotFound", id, err)
		}
		if _, err := paymentpg.GetRefund(ctx, db, id); !errors.Is(err, payment.ErrNotFound) {
			t.Errorf("GetRefund(%q) = %v, want payment.ErrNotFound", id, err)
		}
	}
}

// TestInsertReturnsTheAttemptThatUsedTheIdempotencyKey: a used key, even
// for another order, answers with the stored attempt and ErrExists.
func TestInsertReturnsTheAttemptThatUsedTheIdempotencyKey(t *testing.T) {
	t.Parallel()
	db := setup(t)
	first := stored(t, db, t0)
	again := newPayment("c2")
	again.IdempotencyKey = first.IdempotencyKey
	var existing payment.Payment
	err := inTx(db, func(tx pgx.Tx) (err error) {
		existing, err = paymentpg.Insert(context.Background(), tx, again)
		return err
	})
	if !errors.Is(err, payment.ErrExists) || existing.ID != first.ID {
		t.Errorf("Insert with a used key = %s, %v; want %s and payment.ErrExists", existing.ID, err, first.ID)
	}
	if _, err := paymentpg.GetByOrder(context.Background(), db, again.OrderID); !errors.Is(err, payment.ErrNotFound) {
		t.Errorf("the refused attempt was stored (%v)", err)
	}
}

// TestCompleteStoresTheFirstOutcomeOnly: a pending payment takes the
// outcome; a payment already completed does not, unless it failed with
// exhausted retries (a redrive's reconciliation).
func TestCompleteStoresTheFirstOutcomeOnly(t *testing.T) {
	t.Parallel()
	db := setup(t)
	complete := func(p payment.Payment) bool {
		t.Helper()
		var changed bool
		if err := inTx(db, func(tx pgx.Tx) (err error) {
			changed, err = paymentpg.Complete(context.Background(), tx, p)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return changed
	}
	p := stored(t, db, t0)
	p.Status, p.ChargeID, p.UpdatedAt = paymentsapi.StatusSucceeded, "ch_1", t0.Add(time.Minute)
	if !complete(p) {
		t.Fatal("Complete of a pending payment: changed = false")
	}
	if got := read(t, db, p.ID); got.Status != paymentsapi.StatusSucceeded || got.ChargeID != "ch_1" || !got.UpdatedAt.Equal(p.UpdatedAt) {
		t.Errorf("after Complete: %+v", got)
	}
	late := p
	late.Status, late.ChargeID, late.DeclineCode = paymentsapi.StatusFailed, "", "card_declined"
	if complete(late) {
		t.Error("a second outcome replaced the first")
	}

	exhausted := stored(t, db, t0)
	exhausted.Status, exhausted.FailureReason = paymentsapi.StatusFailed, "retries_exhausted"
	if !complete(exhausted) {
		t.Fatal("Complete as retries_exhausted: changed = false")
	}
	exhausted.Status, exhausted.FailureReason, exhausted.ChargeID = paymentsapi.StatusSucceeded, "", "ch_2"
	if !complete(exhausted) {
		t.Error("a redrive's outcome did not replace retries_exhausted")
	}
	if got := read(t, db, exhausted.ID); got.Status != paymentsapi.StatusSucceeded || got.FailureReason != "" || got.ChargeID != "ch_2" {
		t.Errorf("after the redrive: %+v", got)
	}

	declined := stored(t, db, t0)
	declined.Status, declined.DeclineCode, declined.FailureReason = paymentsapi.StatusFailed, "card_declined", "declined"
	complete(declined)
	declined.Status, declined.DeclineCode, declined.FailureReason = paymentsapi.StatusSucceeded, "", ""
	if complete(declined) {
		t.Error("a declined payment was completed again")
	}
}

// succeeded stores a payment that was charged.
func succeeded(t *testing.T, db *pgxpool.Pool) payment.Payment {
	t.Helper()
	p := stored(t, db, t0)
	p.Status, p.ChargeID = paymentsapi.StatusSucceeded, "ch_"+p.ID[:8]
	if err := inTx(db, func(tx pgx.Tx) error { _, err := paymentpg.Complete(context.Background(), tx, p); return err }); err != nil {
		t.Fatal(err)
	}
	return p
}

func insertRefund(t *testing.T, db *pgxpool.Pool, p payment.Payment, now time.Time) (payment.Refund, bool) {
	t.Helper()
	r := payment.Refund{ID: newID(), PaymentID: p.ID, OrderID: p.OrderID, AmountMinor: p.AmountMinor, Status: "pending"}
	var created bool
	if err := inTx(db, func(tx pgx.Tx) (err error) {
		created, err = paymentpg.InsertRefund(context.Background(), tx, r, now)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return r, created
}

func TestInsertRefundCreatesOneRefundPerPayment(t *testing.T) {
	t.Parallel()
	db := setup(t)
	p := succeeded(t, db)
	r, created := insertRefund(t, db, p, t0)
	if !created {
		t.Fatal("first refund: created = false")
	}
	if got, err := paymentpg.GetRefund(context.Background(), db, r.ID); err != nil || got != r {
		t.Errorf("GetRefund = %+v, %v; want %+v", got, err, r)
	}
	second, created := insertRefund(t, db, p, t0.Add(time.Minute))
	if created {
		t.Error("second refund of the payment: created = true")
	}
	if _, err := paymentpg.GetRefund(context.Background(), db, second.ID); !errors.Is(err, payment.ErrNotFound) {
		t.Errorf("the second refund was stored (%v)", err)
	}
}

// TestCompleteRefundMarksThePaymentRefundedWhenItSucceeds: a failed
// refund leaves the payment as it is and may be retried; the success
// marks the payment refunded (its refunded amount with it); a refund that
// succeeded never changes again.
func TestCompleteRefundMarksThePaymentRefundedWhenItSucceeds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := setup(t)
	p := succeeded(t, db)
	r, _ := insertRefund(t, db, p, t0)
	complete := func(r payment.Refund, at time.Time) bool {
		t.Helper()
		var changed bool
		if err := inTx(db, func(tx pgx.Tx) (err error) {
			changed, err = paymentpg.CompleteRefund(ctx, tx, r, at)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return changed
	}
	failed := r
	failed.Status, failed.FailureReason = "failed", "provider_down"
	if !complete(failed, t0.Add(time.Minute)) {
		t.Fatal("CompleteRefund(failed) of a pending refund: changed = false")
	}
	if got := read(t, db, p.ID); got.Status != paymentsapi.StatusSucceeded || got.RefundedMinor != 0 {
		t.Errorf("a failed refund changed the payment: %+v", got)
	}
	done := r
	done.Status, done.ProviderRefundID = "succeeded", "re_1"
	if !complete(done, t0.Add(2*time.Minute)) {
		t.Fatal("CompleteRefund(succeeded) of a failed refund (a redrive): changed = false")
	}
	if got, err := paymentpg.GetRefund(ctx, db, r.ID); err != nil || got != done {
		t.Errorf("refund = %+v, %v; want %+v", got, err, done)
	}
	if got := read(t, db, p.ID); got.Status != paymentsapi.StatusRefunded || got.RefundedMinor != p.AmountMinor ||
		!got.UpdatedAt.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("payment after the refund: %+v", got)
	}
	if complete(failed, t0.Add(3*time.Minute)) {
		t.Error("a late failure changed a refund that succeeded")
	}
}

func TestAbandonRefundAbandonsOnlyOpenRefunds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := setup(t)
	abandon := func(id string) (payment.Refund, bool, error) {
		var (
			r  payment.Refund
			ok bool
		)
		err := inTx(db, func(tx pgx.Tx) (err error) {
			r, ok, err = paymentpg.AbandonRefund(ctx, tx, id, "customer refunded by hand", t0.Add(time.Hour))
			return err
		})
		return r, ok, err
	}
	open, _ := insertRefund(t, db, succeeded(t, db), t0)
	if r, ok, err := abandon(open.ID); err != nil || !ok || r.ID != open.ID {
		t.Fatalf("AbandonRefund of a pending refund = %+v, %v, %v", r, ok, err)
	}
	if got, _ := paymentpg.GetRefund(ctx, db, open.ID); got.Status != "abandoned" || got.FailureReason != "customer refunded by hand" {
		t.Errorf("after AbandonRefund: %+v", got)
	}
	if _, ok, err := abandon(open.ID); err != nil || ok {
		t.Errorf("a second AbandonRefund = %v, %v; want not abandoned", ok, err)
	}
	done, _ := insertRefund(t, db, succeeded(t, db), t0)
	done.Status = "succeeded"
	if err := inTx(db, func(tx pgx.Tx) error { _, err := paymentpg.CompleteRefund(ctx, tx, done, t0); return err }); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := abandon(done.ID); err != nil || ok {
		t.Errorf("AbandonRefund of a refund that succeeded = %v, %v; want not abandoned", ok, err)
	}
	if _, _, err := abandon(newID()); !errors.Is(err, payment.ErrNotFound) {
		t.Errorf("AbandonRefund of an unknown refund = %v, want payment.ErrNotFound", err)
	}
}

// TestOpenRefundsListsPendingAndFailedOldestFirst, with the receive count
// of each refund's job (0 when the job is gone).
func TestOpenRefundsListsPendingAndFailedOldestFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := setup(t)
	newer, _ := insertRefund(t, db, succeeded(t, db), t0.Add(2*time.Minute))
	older, _ := insertRefund(t, db, succeeded(t, db), t0)
	failed, _ := insertRefund(t, db, succeeded(t, db), t0.Add(time.Minute))
	failed.Status, failed.FailureReason = "failed", "provider_down"
	closed, _ := insertRefund(t, db, succeeded(t, db), t0.Add(-time.Minute))
	closed.Status = "succeeded"
	for _, r := range []payment.Refund{failed, closed} {
		if err := inTx(db, func(tx pgx.Tx) error { _, err := paymentpg.CompleteRefund(ctx, tx, r, t0); return err }); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(ctx, `
		INSERT INTO jobqueue_queues (name, visibility_timeout, max_receive_count, retention, delivery_delay, max_message_bytes)
		VALUES ('refunds-dlq', '30s', 5, '14 days', '0', 262144);
		INSERT INTO jobqueue_messages (queue, body, visible_at, receive_count)
		VALUES ('refunds-dlq', convert_to('{"refund_id":"`+failed.ID+`"}', 'UTF8'), now(), 5)`); err != nil {
		t.Fatal(err)
	}
	got, err := paymentpg.OpenRefunds(ctx, db, 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, o := range got {
		ids = append(ids, o.ID)
	}
	if want := []string{older.ID, failed.ID, newer.ID}; !slices.Equal(ids, want) {
		t.Fatalf("OpenRefunds = %v, want %v (oldest first, not the one that succeeded)", ids, want)
	}
	if f := got[1]; f.Status != "failed" || f.FailureReason != "provider_down" || f.Attempts != 5 || !f.CreatedAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("the failed refund: %+v", f)
	}
	if got[0].Attempts != 0 {
		t.Errorf("a refund without a job: %d attempts, want 0", got[0].Attempts)
	}
	if first, err := paymentpg.OpenRefunds(ctx, db, 1); err != nil || len(first) != 1 || first[0].ID != older.ID {
		t.Errorf("OpenRefunds(limit 1) = %+v, %v", first, err)
	}
}

func TestCallsReturnsAPaymentsProviderCallsOldestFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := setup(t)
	p, other := stored(t, db, t0), stored(t, db, t0)
	wait := int64(1500)
	want := []paymentsapi.ProviderCall{
		{Attempt: 1, Operation: "charge", Outcome: "rate_limited", RetryAfterMs: &wait, DurationMs: 12, At: t0.Add(time.Second)},
		{Attempt: 2, Operation: "charge", Outcome: "ambiguous", DurationMs: 30000, At: t0}, // recorded later, stamped earlier
		{Attempt: 3, Operation: "find_charge", Outcome: "found", DurationMs: 8, At: t0.Add(time.Minute)},
	}
	for _, c := range want {
		if err := paymentpg.InsertCall(ctx, db, p.ID, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := paymentpg.InsertCall(ctx, db, other.ID, want[0]); err != nil {
		t.Fatal(err)
	}
	got, err := paymentpg.Calls(ctx, db, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Calls = %+v, want %d calls", got, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Attempt != w.Attempt || g.Operation != w.Operation || g.Outcome != w.Outcome || g.DurationMs != w.DurationMs ||
			!g.At.Equal(w.At) || (g.RetryAfterMs == nil) != (w.RetryAfterMs == nil) || (g.RetryAfterMs != nil && *g.RetryAfterMs != *w.RetryAfterMs) {
			t.Errorf("call %d = %+v, want %+v", i, g, w)
		}
	}
	bad := want[2]
	bad.Outcome = "teleported"
	if err := paymentpg.InsertCall(ctx, db, p.ID, bad); err == nil {
		t.Error("a call with an unknown outcome was recorded")
	}
}

func TestHandOverTakesOnlyPendingPayments(t *testing.T) {
	t.Parallel()
	db := setup(t)
	handOver := func(id string) bool {
		t.Helper()
		var handed bool
		if err := inTx(db, func(tx pgx.Tx) (err error) {
			handed, err = paymentpg.HandOver(context.Background(), tx, id, t0.Add(time.Minute), t0.Add(2*time.Minute))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return handed
	}
	pending := stored(t, db, t0)
	if !handOver(pending.ID) {
		t.Fatal("HandOver of a pending payment: handed = false")
	}
	if got := read(t, db, pending.ID); !got.OutcomeUnknownSince.Equal(t0.Add(time.Minute)) || got.Status != paymentsapi.StatusPending {
		t.Errorf("after HandOver: %+v", got)
	}
	if done := succeeded(t, db); handOver(done.ID) {
		t.Error("HandOver of a payment that succeeded: handed = true")
	}
}

// TestClaimUnsettledClaimsDuePaymentsOldestFirstForALease: a pending
// payment is due past the bound (or at its reconcile_after); a claim hides
// it for the lease; DeferReconcile counts failed lookups only.
func TestClaimUnsettledClaimsDuePaymentsOldestFirstForALease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := setup(t)
	const bound, lease = 10 * time.Minute, time.Minute
	now := t0.Add(time.Hour)
	oldest, older := stored(t, db, now.Add(-40*time.Minute)), stored(t, db, now.Add(-30*time.Minute))
	young := stored(t, db, now.Add(-5*time.Minute)) // within the bound
	done := succeeded(t, db)                        // not pending (created at t0: would be due)
	claim := func(at time.Time, limit int) []string {
		t.Helper()
		us, err := paymentpg.ClaimUnsettled(ctx, db, at, bound, lease, limit)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, u := range us {
			ids = append(ids, u.ID)
		}
		return ids
	}
	if got := claim(now, 1); !slices.Equal(got, []string{oldest.ID}) {
		t.Fatalf("claim(limit 1) = %v, want the oldest %s", got, oldest.ID)
	}
	if got := claim(now, 10); !slices.Equal(got, []string{older.ID}) {
		t.Fatalf("claim within the lease = %v, want only %s (not %s, %s)", got, older.ID, young.ID, done.ID)
	}
	if err := paymentpg.DeferReconcile(ctx, db, oldest.ID, now.Add(30*time.Minute), "lookup timed out"); err != nil {
		t.Fatal(err)
	}
	if err := paymentpg.DeferReconcile(ctx, db, older.ID, now.Add(30*time.Minute), ""); err != nil {
		t.Fatal(err)
	}
	if got := claim(now.Add(10*time.Minute), 10); !slices.Equal(got, []string{young.ID}) {
		t.Fatalf("claim before the deferred lookups = %v, want only %s", got, young.ID)
	}
	us, err := paymentpg.ClaimUnsettled(ctx, db, now.Add(30*time.Minute), bound, lease, 10)
	if err != nil || len(us) != 3 {
		t.Fatalf("claim at the deferred lookups = %+v, %v", us, err)
	}
	attempts := map[string]int{}
	for _, u := range us {
		attempts[u.ID] = u.Attempts
	}
	if attempts[oldest.ID] != 1 || attempts[older.ID] != 0 {
		t.Errorf("attempts = %v, want 1 for %s (failed lookup), 0 for %s", attempts, oldest.ID, older.ID)
	}
	if err := paymentpg.DeferReconcile(ctx, db, newID(), now, "x"); err == nil {
		t.Error("DeferReconcile of an unknown payment succeeded")
	}
}

func TestReadBacklogCountsHandedOverPaymentsAndOldOpenRefunds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := setup(t)
	now := t0.Add(time.Hour)
	if b, err := paymentpg.ReadBacklog(ctx, db, now, time.Minute); err != nil || b != (paymentpg.Backlog{}) {
		t.Fatalf("ReadBacklog of nothing = %+v, %v", b, err)
	}
	for _, since := range []time.Time{now.Add(-20 * time.Minute), now.Add(-5 * time.Minute)} {
		p := stored(t, db, t0)
		if err := inTx(db, func(tx pgx.Tx) error { _, err := paymentpg.HandOver(ctx, tx, p.ID, since, now); return err }); err != nil {
			t.Fatal(err)
		}
	}
	stored(t, db, t0) // pending, its job still runs: not the reconciler's
	insertRefund(t, db, succeeded(t, db), now.Add(-time.Hour))
	insertRefund(t, db, succeeded(t, db), now.Add(-time.Second)) // younger than openFor
	b, err := paymentpg.ReadBacklog(ctx, db, now, time.Minute)
	if want := (paymentpg.Backlog{Unreconciled: 2, OldestUnreconciled: 20 * time.Minute, RefundsOpen: 1}); err != nil || b != want {
		t.Errorf("ReadBacklog = %+v, %v; want %+v", b, err, want)
	}
}
