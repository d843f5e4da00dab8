// Package notificationpg is notifications' PostgreSQL store. SQL is visible
// in each function; driver errors become the domain's errors here. Inserts
// take a pgx.Tx: a notification commits with its inbox claim and its
// e-mail job, and "sent" commits with the job's deletion.
package notificationpg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopfloor/shopfloor/services/notifications/internal/notification"
	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
)

// Querier is a pool or a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Insert writes n (status queued) unless the order already has a
// notification of n's kind. created is false when it had one: then
// nothing of the notification was written, whatever n says — the first
// event of a kind wins, and a replay, a redelivery or a rebuild through
// another consumer group finds the row and changes nothing.
//
// The one exception is the order's customer: when n carries one, every
// row of the order that has none yet (recorded before customer ids were
// stored) gets it, so that a replay or the order's next event makes old
// rows visible to their customer. A customer id once set is never
// changed.
func Insert(ctx context.Context, tx pgx.Tx, n notification.Notification) (created bool, err error) {
	items, err := json.Marshal(orEmpty(n.Items))
	if err != nil {
		return false, fmt.Errorf("items of order %s: %w", n.OrderID, err)
	}
	tag, err := tx.Exec(ctx, `
		INSERT INTO notifications (id, order_id, customer_id, kind, recipient, status, message_id, event_id, order_version,
			currency, total_minor, reason, items, created_at, updated_at)
		VALUES ($1, $2, nullif($3, ''), $4, $5, $6, $7, $8, $9, $10, $11, nullif($12, ''), $13, $14, $14)
		ON CONFLICT (order_id, kind) DO NOTHING`,
		n.ID, n.OrderID, n.CustomerID, n.Kind, n.Recipient, notificationsapi.StatusQueued, n.MessageID(), n.EventID, n.OrderVersion,
		n.Currency, n.TotalMinor, n.Reason, items, n.CreatedAt)
	if err != nil {
		return false, fmt.Errorf("insert %s notification of order %s: %w", n.Kind, n.OrderID, err)
	}
	if n.CustomerID != "" {
		if _, err := tx.Exec(ctx, `
			UPDATE notifications SET customer_id = $2
			WHERE order_id = $1 AND customer_id IS NULL`, n.OrderID, n.CustomerID); err != nil {
			return false, fmt.Errorf("fill customer of order %s: %w", n.OrderID, err)
		}
	}
	return tag.RowsAffected() == 1, nil
}

func orEmpty(l []notification.Line) []notification.Line {
	if l == nil {
		return []notification.Line{}
	}
	return l
}

const columns = `id::text, order_id::text, coalesce(customer_id, ''), kind, recipient, status, attempts, coalesce(last_error, ''), event_id,
	order_version, currency, total_minor, coalesce(reason, ''), items, created_at, updated_at, sent_at`

func scan(row pgx.Row) (notification.Notification, error) {
	var (
		n     notification.Notification
		items []byte
	)
	if err := row.Scan(&n.ID, &n.OrderID, &n.CustomerID, &n.Kind, &n.Recipient, &n.Status, &n.Attempts, &n.LastError, &n.EventID,
		&n.OrderVersion, &n.Currency, &n.TotalMinor, &n.Reason, &items, &n.CreatedAt, &n.UpdatedAt, &n.SentAt); err != nil {
		return n, err
	}
	if err := json.Unmarshal(items, &n.Items); err != nil {
		return n, fmt.Errorf("items of notification %s: %w", n.ID, err)
	}
	return n, nil
}

// Get reads a notification; notification.ErrNotFound when there is none
// (or id is not a UUID).
func Get(ctx context.Context, q Querier, id string) (notification.Notification, error) {
	n, err := scan(q.QueryRow(ctx, `SELECT `+columns+` FROM notifications WHERE id = $1::text::uuid`, id))
	switch {
	case errors.Is(err, pgx.ErrNoRows), isBadUUID(err):
		return n, fmt.Errorf("notification %s: %w", id, notification.ErrNotFound)
	case err != nil:
		return n, fmt.Errorf("get notification %s: %w", id, err)
	}
	return n, nil
}

// ListByOrder reads an order's notifications, oldest first (none: an empty
// list). customerID, when not empty, keeps only the rows of that
// customer: another customer's order, and rows whose customer is not
// known, read exactly like an order without notifications. "" reads
// every row (an operator). orderID must be a UUID (the caller validates
// it).
func ListByOrder(ctx context.Context, q Querier, orderID, customerID string) ([]notification.Notification, error) {
	rows, err := q.Query(ctx, `
		SELECT `+columns+` FROM notifications
		WHERE order_id = $1::text::uuid AND ($2 = '' OR customer_id = $2)
		ORDER BY created_at, id`, orderID, customerID)
	if err != nil {
		return nil, fmt.Errorf("notifications of order %s: %w", orderID, err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (notification.Notification, error) { return scan(r) })
	if err != nil {
		return nil, fmt.Errorf("notifications of order %s: %w", orderID, err)
	}
	return list, nil
}

// MarkSent records that the SMTP server accepted the e-mail at at (one
// more attempt, the error cleared). changed is false when it was marked
// sent already (another delivery of the job got there first).
func MarkSent(ctx context.Context, q Querier, id string, at time.Time) (changed bool, err error) {
	tag, err := q.Exec(ctx, `
		UPDATE notifications SET status = 'sent', sent_at = $2, updated_at = $2, attempts = attempts + 1, last_error = NULL
		WHERE id = $1 AND status <> 'sent'`, id, at)
	if err != nil {
		return false, fmt.Errorf("mark notification %s sent: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// RecordFailure counts a failed attempt with its error: the notification
// is failed when final (the worker gave up), queued otherwise (it will be
// retried; a redriven failed notification is queued again). A sent
// notification is left alone; changed reports whether the row changed.
func RecordFailure(ctx context.Context, q Querier, id, lastError string, final bool, at time.Time) (changed bool, err error) {
	status := notificationsapi.StatusQueued
	if final {
		status = notificationsapi.StatusFailed
	}
	tag, err := q.Exec(ctx, `
		UPDATE notifications SET status = $2, attempts = attempts + 1, last_error = $3, updated_at = $4
		WHERE id = $1 AND status <> 'sent'`, id, status, lastError, at)
	if err != nil {
		return false, fmt.Errorf("record failure of notification %s: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

func isBadUUID(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "22P02"
}
