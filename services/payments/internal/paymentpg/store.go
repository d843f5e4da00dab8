// Package paymentpg is payments' PostgreSQL store. SQL is visible in each
// function; driver errors become the domain's errors here. Writes take a
// pgx.Tx: every write commits with its job, its outbox event or its job
// deletion.
package paymentpg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopfloor/shopfloor/services/payments/internal/payment"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// Querier is a pool or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Insert writes a new payment attempt (p.CustomerID "" is stored as NULL:
// no known customer). When the order already has one, or the idempotency
// key was used, nothing is written and the existing attempt is returned
// with an error matching payment.ErrExists.
func Insert(ctx context.Context, tx pgx.Tx, p payment.Payment) (payment.Payment, error) {
	tag, err := tx.Exec(ctx, `
		INSERT INTO payments (id, order_id, customer_id, idempotency_key, amount_minor, currency, payment_method, status, created_at, updated_at)
		VALUES ($1, $2, nullif($3, ''), $4, $5, $6, $7, $8, $9, $9)
		ON CONFLICT DO NOTHING`,
		p.ID, p.OrderID, p.CustomerID, p.IdempotencyKey, p.AmountMinor, p.Currency, p.PaymentMethod, p.Status, p.CreatedAt)
	if err != nil {
		return p, fmt.Errorf("insert payment for order %s: %w", p.OrderID, err)
	}
	if tag.RowsAffected() == 1 {
		return p, nil
	}
	existing, err := scan(tx.QueryRow(ctx, `SELECT `+columns+` FROM payments p WHERE order_id = $1 OR idempotency_key = $2 LIMIT 1`,
		p.OrderID, p.IdempotencyKey))
	if err != nil {
		return p, fmt.Errorf("read existing payment of order %s: %w", p.OrderID, err)
	}
	return existing, fmt.Errorf("order %s: %w (%s)", p.OrderID, payment.ErrExists, existing.ID)
}

const columns = `p.id::text, p.order_id::text, coalesce(p.customer_id, ''), p.idempotency_key, p.amount_minor, p.currency, p.payment_method, p.status,
	coalesce(p.charge_id, ''), coalesce(p.decline_code, ''), coalesce(p.failure_reason, ''),
	coalesce((SELECT r.amount_minor FROM refunds r WHERE r.payment_id = p.id AND r.status = 'succeeded'), 0),
	p.created_at, p.updated_at, coalesce(p.outcome_unknown_since, 'epoch')`

// epoch stands for NULL in a scanned timestamp.
var epoch = time.Unix(0, 0)

func scan(row pgx.Row) (payment.Payment, error) {
	var p payment.Payment
	err := row.Scan(&p.ID, &p.OrderID, &p.CustomerID, &p.IdempotencyKey, &p.AmountMinor, &p.Currency, &p.PaymentMethod, &p.Status,
		&p.ChargeID, &p.DeclineCode, &p.FailureReason, &p.RefundedMinor, &p.CreatedAt, &p.UpdatedAt, &p.OutcomeUnknownSince)
	if p.OutcomeUnknownSince.Equal(epoch) {
		p.OutcomeUnknownSince = time.Time{}
	}
	return p, err
}

// Get reads a payment; payment.ErrNotFound when there is none (or id is
// not a UUID).
func Get(ctx context.Context, q Querier, id string) (payment.Payment, error) {
	return getBy(ctx, q, "id", id)
}

// GetByOrder reads the payment of an order.
func GetByOrder(ctx context.Context, q Querier, orderID string) (payment.Payment, error) {
	return getBy(ctx, q, "order_id", orderID)
}

func getBy(ctx context.Context, q Querier, col, v string) (payment.Payment, error) {
	p, err := scan(q.QueryRow(ctx, `SELECT `+columns+` FROM payments p WHERE `+col+` = $1::text::uuid`, v))
	switch {
	case errors.Is(err, pgx.ErrNoRows), isBadUUID(err):
		return p, fmt.Errorf("payment %s %s: %w", col, v, payment.ErrNotFound)
	case err != nil:
		return p, fmt.Errorf("get payment %s %s: %w", col, v, err)
	}
	return p, nil
}

// FillCustomer records customerID as the customer of the order's payment
// if it has none yet (a payment an operator created before order.placed
// arrived, or one recorded before customers were stored). A customer once
// set is never changed: an order's customer does not change. filled is
// false when there is no such payment or it already has a customer.
func FillCustomer(ctx context.Context, tx pgx.Tx, orderID, customerID string) (filled bool, err error) {
	tag, err := tx.Exec(ctx, `UPDATE payments SET customer_id = $2 WHERE order_id = $1::text::uuid AND customer_id IS NULL`,
		orderID, customerID)
	if err != nil {
		return false, fmt.Errorf("fill customer of order %s: %w", orderID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Complete stores the outcome of a charge (status, charge, decline code,
// failure reason) if the payment may still change: it is pending, or
// failed with exhausted retries (a redrive's reconciliation). changed is
// false when another delivery got there first.
func Complete(ctx context.Context, tx pgx.Tx, p payment.Payment) (changed bool, err error) {
	tag, err := tx.Exec(ctx, `
		UPDATE payments SET status = $2, charge_id = nullif($3, ''), decline_code = nullif($4, ''),
			failure_reason = nullif($5, ''), updated_at = $6
		WHERE id = $1 AND (status = 'pending' OR (status = 'failed' AND failure_reason = 'retries_exhausted'))`,
		p.ID, p.Status, p.ChargeID, p.DeclineCode, p.FailureReason, p.UpdatedAt)
	if err != nil {
		return false, fmt.Errorf("complete payment %s: %w", p.ID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// InsertRefund writes a pending refund for a payment; created is false when
// the payment already has one (at most one refund per payment).
func InsertRefund(ctx context.Context, tx pgx.Tx, r payment.Refund, now time.Time) (created bool, err error) {
	tag, err := tx.Exec(ctx, `
		INSERT INTO refunds (id, payment_id, order_id, amount_minor, status, created_at, updated_at)
		VALUES ($1, $2, $3, $4, 'pending', $5, $5)
		ON CONFLICT (payment_id) DO NOTHING`, r.ID, r.PaymentID, r.OrderID, r.AmountMinor, now)
	if err != nil {
		return false, fmt.Errorf("insert refund of payment %s: %w", r.PaymentID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// GetRefund reads a refund.
func GetRefund(ctx context.Context, q Querier, id string) (payment.Refund, error) {
	var r payment.Refund
	err := q.QueryRow(ctx, `
		SELECT id::text, payment_id::text, order_id::text, amount_minor, status,
			coalesce(provider_refund_id, ''), coalesce(failure_reason, '')
		FROM refunds WHERE id = $1::text::uuid`, id).
		Scan(&r.ID, &r.PaymentID, &r.OrderID, &r.AmountMinor, &r.Status, &r.ProviderRefundID, &r.FailureReason)
	switch {
	case errors.Is(err, pgx.ErrNoRows), isBadUUID(err):
		return r, fmt.Errorf("refund %s: %w", id, payment.ErrNotFound)
	case err != nil:
		return r, fmt.Errorf("get refund %s: %w", id, err)
	}
	return r, nil
}

// CompleteRefund stores a refund's outcome if it is still pending (or
// failed: a redrive from the DLQ retries it), and
// marks its payment refunded when it succeeded. changed is false when
// another delivery got there first.
func CompleteRefund(ctx context.Context, tx pgx.Tx, r payment.Refund, now time.Time) (changed bool, err error) {
	tag, err := tx.Exec(ctx, `
		UPDATE refunds SET status = $2, provider_refund_id = nullif($3, ''), failure_reason = nullif($4, ''), updated_at = $5
		WHERE id = $1 AND status IN ('pending', 'failed')`, r.ID, r.Status, r.ProviderRefundID, r.FailureReason, now)
	if err != nil {
		return false, fmt.Errorf("complete refund %s: %w", r.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return false, nil
	}
	if r.Status == "succeeded" {
		if _, err := tx.Exec(ctx, `UPDATE payments SET status = 'refunded', updated_at = $2 WHERE id = $1 AND status = 'succeeded'`,
			r.PaymentID, now); err != nil {
			return false, fmt.Errorf("mark payment %s refunded: %w", r.PaymentID, err)
		}
	}
	return true, nil
}

func isBadUUID(err error) bool {
	var pe interface{ SQLState() string }
	return errors.As(err, &pe) && pe.SQLState() == "22P02"
}

// InsertCall records a call a worker made to the provider for paymentID.
func InsertCall(ctx context.Context, q interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}, paymentID string, c paymentsapi.ProviderCall) error {
	_, err := q.Exec(ctx, `
		INSERT INTO provider_calls (payment_id, attempt, operation, outcome, retry_after_ms, duration_ms, at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		paymentID, c.Attempt, c.Operation, c.Outcome, c.RetryAfterMs, c.DurationMs, c.At)
	if err != nil {
		return fmt.Errorf("record provider call of payment %s: %w", paymentID, err)
	}
	return nil
}

// Calls returns the provider calls of paymentID, oldest first (at most
// 100: a payment's calls are bounded by its job's receives).
func Calls(ctx context.Context, q Querier, paymentID string) ([]paymentsapi.ProviderCall, error) {
	rows, err := q.Query(ctx, `
		SELECT attempt, operation, outcome, retry_after_ms, duration_ms, at
		FROM provider_calls WHERE payment_id = $1 ORDER BY id LIMIT 100`, paymentID)
	if err != nil {
		return nil, fmt.Errorf("provider calls of payment %s: %w", paymentID, err)
	}
	calls, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (paymentsapi.ProviderCall, error) {
		var c paymentsapi.ProviderCall
		err := r.Scan(&c.Attempt, &c.Operation, &c.Outcome, &c.RetryAfterMs, &c.DurationMs, &c.At)
		c.At = c.At.UTC()
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("provider calls of payment %s: %w", paymentID, err)
	}
	return calls, nil
}
