package paymentpg

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/services/payments/internal/payment"
)

// HandOver records that the worker gave up on a pending payment's charge
// without a definite answer: the reconciler owns it from now and looks it
// up at reconcileAt. handed is false when the payment is no longer
// pending (another delivery recorded its outcome).
func HandOver(ctx context.Context, tx pgx.Tx, id string, now, reconcileAt time.Time) (handed bool, err error) {
	tag, err := tx.Exec(ctx, `
		UPDATE payments SET outcome_unknown_since = $2, reconcile_after = $3, updated_at = $2
		WHERE id = $1 AND status = 'pending'`, id, now, reconcileAt)
	if err != nil {
		return false, fmt.Errorf("hand payment %s to the reconciler: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Unsettled is a pending payment the reconciler claimed (its
// OutcomeUnknownSince is zero while its job still runs: a payment pending
// past the bound).
type Unsettled struct {
	payment.Payment
	// Attempts is how many lookups failed before this one.
	Attempts int
}

// ClaimUnsettled claims up to limit pending payments whose next lookup is
// due (reconcile_after, or created_at + pendingBound when it was never
// set), oldest first, by moving their reconcile_after to now + lease, so
// that reconcilers of several instances never look up the same payment at
// once and a reconciler that dies mid-lookup leaves it to the next pass
// after the lease.
func ClaimUnsettled(ctx context.Context, q Querier, now time.Time, pendingBound, lease time.Duration, limit int) ([]Unsettled, error) {
	rows, err := q.Query(ctx, `
		WITH due AS (
			SELECT id FROM payments
			WHERE status = 'pending' AND coalesce(reconcile_after, created_at + $2::interval) <= $1
			ORDER BY created_at LIMIT $4 FOR UPDATE SKIP LOCKED)
		UPDATE payments p SET reconcile_after = $1 + $3::interval
		FROM due WHERE p.id = due.id
		RETURNING `+columns+`, p.reconcile_attempts`,
		now, pendingBound, lease, limit)
	if err != nil {
		return nil, fmt.Errorf("claim unsettled payments: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Unsettled, error) {
		var u Unsettled
		err := r.Scan(&u.ID, &u.OrderID, &u.CustomerID, &u.IdempotencyKey, &u.AmountMinor, &u.Currency, &u.PaymentMethod, &u.Status,
			&u.ChargeID, &u.DeclineCode, &u.FailureReason, &u.RefundedMinor, &u.CreatedAt, &u.UpdatedAt, &u.OutcomeUnknownSince, &u.Attempts)
		if u.OutcomeUnknownSince.Equal(epoch) {
			u.OutcomeUnknownSince = time.Time{}
		}
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim unsettled payments: %w", err)
	}
	return out, nil
}

// DeferReconcile sets a pending payment's next lookup; lookupErr is the
// failed lookup's error ("" when the lookup worked but settled nothing:
// the attempt's job still runs), counted in reconcile_attempts.
func DeferReconcile(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, id string, next time.Time, lookupErr string) error {
	var one int
	err := q.QueryRow(ctx, `
		UPDATE payments SET reconcile_after = $2,
			reconcile_attempts = reconcile_attempts + CASE WHEN $3 = '' THEN 0 ELSE 1 END,
			reconcile_error = nullif($3, '')
		WHERE id = $1 RETURNING 1`, id, next, lookupErr).Scan(&one)
	if err != nil {
		return fmt.Errorf("defer reconciling payment %s: %w", id, err)
	}
	return nil
}

// Backlog is what waits on the reconciler and the refund worker.
type Backlog struct {
	// Unreconciled: pending payments the worker gave up on.
	Unreconciled int
	// OldestUnreconciled: how long the oldest of them has waited.
	OldestUnreconciled time.Duration
	// RefundsOpen: refunds not succeeded nor abandoned, older than
	// openFor (retrying, or failed and waiting for an operator).
	RefundsOpen int
}

// ReadBacklog counts the backlog (for the metrics).
func ReadBacklog(ctx context.Context, q Querier, now time.Time, openFor time.Duration) (Backlog, error) {
	var b Backlog
	var oldest *time.Time
	err := q.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM payments WHERE status = 'pending' AND outcome_unknown_since IS NOT NULL),
			(SELECT min(outcome_unknown_since) FROM payments WHERE status = 'pending' AND outcome_unknown_since IS NOT NULL),
			(SELECT count(*) FROM refunds WHERE status IN ('pending', 'failed') AND created_at < $1)`,
		now.Add(-openFor)).Scan(&b.Unreconciled, &oldest, &b.RefundsOpen)
	if err != nil {
		return b, fmt.Errorf("read the reconciliation backlog: %w", err)
	}
	if oldest != nil {
		b.OldestUnreconciled = now.Sub(*oldest)
	}
	return b, nil
}

// AbandonRefund marks an open refund (pending or failed) abandoned with
// the operator's reason. abandoned is false when the refund is not open
// (succeeded, or abandoned already).
func AbandonRefund(ctx context.Context, tx pgx.Tx, id, reason string, now time.Time) (r payment.Refund, abandoned bool, err error) {
	r, err = GetRefund(ctx, tx, id)
	if err != nil {
		return r, false, err
	}
	tag, err := tx.Exec(ctx, `
		UPDATE refunds SET status = 'abandoned', failure_reason = $2, updated_at = $3
		WHERE id = $1 AND status IN ('pending', 'failed')`, id, reason, now)
	if err != nil {
		return r, false, fmt.Errorf("abandon refund %s: %w", id, err)
	}
	return r, tag.RowsAffected() == 1, nil
}

// OpenRefund is a refund neither succeeded nor abandoned, with its job's
// attempts so far.
type OpenRefund struct {
	payment.Refund
	CreatedAt time.Time
	// Attempts is its job's receive count (0 when the job is gone, e.g.
	// purged from the DLQ).
	Attempts int
}

// OpenRefunds lists open refunds (pending or failed), oldest first, at
// most limit.
func OpenRefunds(ctx context.Context, q Querier, limit int) ([]OpenRefund, error) {
	rows, err := q.Query(ctx, `
		SELECT r.id::text, r.payment_id::text, r.order_id::text, r.amount_minor, r.status, coalesce(r.failure_reason, ''), r.created_at,
			coalesce((SELECT max(m.receive_count) FROM jobqueue_messages m
				WHERE m.queue IN ('refunds', 'refunds-dlq') AND convert_from(m.body, 'UTF8')::jsonb->>'refund_id' = r.id::text), 0)
		FROM refunds r WHERE r.status IN ('pending', 'failed') ORDER BY r.created_at LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("open refunds: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (OpenRefund, error) {
		var o OpenRefund
		err := r.Scan(&o.ID, &o.PaymentID, &o.OrderID, &o.AmountMinor, &o.Status, &o.FailureReason, &o.CreatedAt, &o.Attempts)
		o.CreatedAt = o.CreatedAt.UTC()
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("open refunds: %w", err)
	}
	return out, nil
}
