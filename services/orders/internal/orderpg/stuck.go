package orderpg

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Stuck is an order pending_payment past the bound, claimed for a repair.
type Stuck struct {
	ID string
	// Attempts: earlier looks that could not repair it.
	Attempts int
	// PendingSince: when it became pending_payment (its last change).
	PendingSince time.Time
}

// ClaimStuck claims up to limit orders pending_payment whose next look is
// due (repair_after, or updated_at + bound when never set), oldest first,
// by moving repair_after to now + lease: instances never repair the same
// order at once, and one that dies mid-repair leaves it to the lease.
func ClaimStuck(ctx context.Context, db interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, now time.Time, bound, lease time.Duration, limit int) ([]Stuck, error) {
	rows, err := db.Query(ctx, `
		WITH due AS (
			SELECT id FROM orders
			WHERE status = 'pending_payment' AND coalesce(repair_after, updated_at + $2::interval) <= $1
			ORDER BY updated_at LIMIT $4 FOR UPDATE SKIP LOCKED)
		UPDATE orders o SET repair_after = $1 + $3::interval FROM due WHERE o.id = due.id
		RETURNING o.id::text, o.repair_attempts, o.updated_at`, now, bound, lease, limit)
	if err != nil {
		return nil, fmt.Errorf("claim stuck orders: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Stuck, error) {
		var s Stuck
		err := r.Scan(&s.ID, &s.Attempts, &s.PendingSince)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim stuck orders: %w", err)
	}
	return out, nil
}

// DeferRepair sets an order's next look; failed counts a look that could
// not repair it in repair_attempts.
func DeferRepair(ctx context.Context, db interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}, id string, next time.Time, failed bool) error {
	_, err := db.Exec(ctx, `UPDATE orders SET repair_after = $2, repair_attempts = repair_attempts + CASE WHEN $3 THEN 1 ELSE 0 END
		WHERE id = $1`, id, next, failed)
	if err != nil {
		return fmt.Errorf("defer repair of order %s: %w", id, err)
	}
	return nil
}

// CountStuck counts orders pending_payment since before now - bound, and
// how long the oldest has waited.
func CountStuck(ctx context.Context, db interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, now time.Time, bound time.Duration) (n int, oldest time.Duration, err error) {
	var since *time.Time
	if err := db.QueryRow(ctx, `SELECT count(*), min(updated_at) FROM orders WHERE status = 'pending_payment' AND updated_at < $1`,
		now.Add(-bound)).Scan(&n, &since); err != nil {
		return 0, 0, fmt.Errorf("count stuck orders: %w", err)
	}
	if since != nil {
		oldest = now.Sub(*since)
	}
	return n, oldest, nil
}
