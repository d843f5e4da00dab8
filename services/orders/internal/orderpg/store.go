// Package orderpg is orders' PostgreSQL store. SQL is visible in each
// function; driver errors become the domain's errors here. Writes take a
// pgx.Tx: the use case owns the transaction, because every write commits
// with its outbox event (and, for API writes, its idempotency key).
package orderpg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/services/orders/internal/order"
)

// Querier is a pool or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Insert writes a new order and its lines.
func Insert(ctx context.Context, tx pgx.Tx, o order.Order) error {
	shipping, err := json.Marshal(o.Shipping)
	if err != nil {
		return fmt.Errorf("insert order %s: shipping: %w", o.ID, err)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO orders (id, customer_id, customer_email, status, version, currency, total_minor, shipping, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)`,
		o.ID, o.CustomerID, o.CustomerEmail, string(o.Status), o.Version, o.Currency, o.TotalMinor, shipping, o.CreatedAt); err != nil {
		return fmt.Errorf("insert order %s: %w", o.ID, err)
	}
	n := len(o.Lines)
	lineNo, productIDs, skus, names := make([]int32, n), make([]string, n), make([]string, n), make([]string, n)
	qty, prices, versions := make([]int32, n), make([]int64, n), make([]int64, n)
	for i, l := range o.Lines {
		lineNo[i], productIDs[i], skus[i], names[i] = int32(i), l.ProductID, l.SKU, l.Name
		qty[i], prices[i], versions[i] = int32(l.Quantity), l.UnitPriceMinor, l.CatalogVersion
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO order_items (order_id, line, product_id, sku, name, quantity, unit_price_minor, catalog_version)
		SELECT $1, l.line, l.product_id::uuid, l.sku, l.name, l.qty, l.price, l.version
		FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::int[], $7::bigint[], $8::bigint[])
		     AS l(line, product_id, sku, name, qty, price, version)`,
		o.ID, lineNo, productIDs, skus, names, qty, prices, versions); err != nil {
		return fmt.Errorf("insert lines of order %s: %w", o.ID, err)
	}
	return nil
}

const orderColumns = `id::text, customer_id, customer_email, status, version, currency, total_minor, shipping,
	coalesce(payment_id, ''), created_at, updated_at`

func scanOrder(row pgx.Row) (order.Order, error) {
	var o order.Order
	var status string
	var shipping []byte
	if err := row.Scan(&o.ID, &o.CustomerID, &o.CustomerEmail, &status, &o.Version, &o.Currency, &o.TotalMinor,
		&shipping, &o.PaymentID, &o.CreatedAt, &o.UpdatedAt); err != nil {
		return o, err
	}
	o.Status = order.Status(status)
	if err := json.Unmarshal(shipping, &o.Shipping); err != nil {
		return o, fmt.Errorf("shipping of order %s: %w", o.ID, err)
	}
	return o, nil
}

// Get reads one order with its lines; ErrNotFound when there is none.
// forUpdate locks the order row for the rest of the transaction (q must be
// a pgx.Tx).
func Get(ctx context.Context, q Querier, id string, forUpdate bool) (order.Order, error) {
	sql := `SELECT ` + orderColumns + ` FROM orders WHERE id = $1`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	o, err := scanOrder(q.QueryRow(ctx, sql, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return o, fmt.Errorf("order %s: %w", id, order.ErrNotFound)
	}
	if err != nil {
		return o, fmt.Errorf("get order %s: %w", id, err)
	}
	lines, err := linesOf(ctx, q, []string{id})
	if err != nil {
		return o, err
	}
	o.Lines = lines[id]
	return o, nil
}

// ListByCustomer reads up to limit of a customer's orders, newest first,
// starting after the order beforeID (empty: from the newest).
func ListByCustomer(ctx context.Context, q Querier, customerID, beforeID string, limit int) ([]order.Order, error) {
	sql := `SELECT ` + orderColumns + ` FROM orders WHERE customer_id = $1`
	args := []any{customerID, limit}
	if beforeID != "" {
		sql += ` AND id < $3`
		args = append(args, beforeID)
	}
	rows, err := q.Query(ctx, sql+` ORDER BY id DESC LIMIT $2`, args...)
	if err != nil {
		return nil, fmt.Errorf("list orders of %s: %w", customerID, err)
	}
	orders, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (order.Order, error) { return scanOrder(r) })
	if err != nil {
		return nil, fmt.Errorf("list orders of %s: %w", customerID, err)
	}
	ids := make([]string, len(orders))
	for i, o := range orders {
		ids[i] = o.ID
	}
	lines, err := linesOf(ctx, q, ids)
	if err != nil {
		return nil, err
	}
	for i := range orders {
		orders[i].Lines = lines[orders[i].ID]
	}
	return orders, nil
}

func linesOf(ctx context.Context, q Querier, ids []string) (map[string][]order.Line, error) {
	out := make(map[string][]order.Line, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `
		SELECT order_id::text, product_id::text, sku, name, quantity, unit_price_minor, catalog_version
		FROM order_items WHERE order_id = ANY($1::uuid[]) ORDER BY order_id, line`, ids)
	if err != nil {
		return nil, fmt.Errorf("order lines: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var l order.Line
		if err := rows.Scan(&id, &l.ProductID, &l.SKU, &l.Name, &l.Quantity, &l.UnitPriceMinor, &l.CatalogVersion); err != nil {
			return nil, fmt.Errorf("order lines: %w", err)
		}
		out[id] = append(out[id], l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("order lines: %w", err)
	}
	return out, nil
}

// CompareAndSet stores o's status, payment and version if the stored
// version is still fromVersion; otherwise nothing changes and the error
// matches order.ErrVersionMismatch (or order.ErrNotFound).
func CompareAndSet(ctx context.Context, tx pgx.Tx, o order.Order, fromVersion int64) error {
	tag, err := tx.Exec(ctx, `
		UPDATE orders SET status = $3, version = $4, payment_id = nullif($5, ''), updated_at = $6
		WHERE id = $1 AND version = $2`,
		o.ID, fromVersion, string(o.Status), o.Version, o.PaymentID, o.UpdatedAt)
	if err != nil {
		return fmt.Errorf("update order %s: %w", o.ID, err)
	}
	if tag.RowsAffected() == 0 {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM orders WHERE id = $1)`, o.ID).Scan(&exists); err != nil {
			return fmt.Errorf("update order %s: %w", o.ID, err)
		}
		if !exists {
			return fmt.Errorf("order %s: %w", o.ID, order.ErrNotFound)
		}
		return fmt.Errorf("order %s at version %d: %w", o.ID, fromVersion, order.ErrVersionMismatch)
	}
	return nil
}

// PaymentEvent is one payment event as the payments consumer handled it.
type PaymentEvent struct {
	EventID, OrderID, PaymentID, EventType string
	// Outcome: "applied", "ignored" or "refund_required".
	Outcome      string
	OrderStatus  order.Status
	OrderVersion int64
}

// Payment event outcomes.
const (
	OutcomeApplied        = "applied"
	OutcomeIgnored        = "ignored"
	OutcomeRefundRequired = "refund_required"
)

// RecordPaymentEvent stores what the consumer did with a payment event. An
// outcome of refund_required is stored only once per payment: recorded
// false means an earlier event already asked for that payment's refund
// (the event is then stored as ignored).
func RecordPaymentEvent(ctx context.Context, tx pgx.Tx, e PaymentEvent) (recorded bool, err error) {
	const insert = `
		INSERT INTO order_payment_events (event_id, order_id, payment_id, event_type, outcome, order_status, order_version)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`
	args := []any{e.EventID, e.OrderID, e.PaymentID, e.EventType, e.Outcome, string(e.OrderStatus), e.OrderVersion}
	if e.Outcome != OutcomeRefundRequired {
		if _, err := tx.Exec(ctx, insert, args...); err != nil {
			return false, fmt.Errorf("record payment event %s: %w", e.EventID, err)
		}
		return true, nil
	}
	tag, err := tx.Exec(ctx, insert+` ON CONFLICT (payment_id) WHERE outcome = 'refund_required' DO NOTHING`, args...)
	if err != nil {
		return false, fmt.Errorf("record payment event %s: %w", e.EventID, err)
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	args[4] = OutcomeIgnored
	if _, err := tx.Exec(ctx, insert, args...); err != nil {
		return false, fmt.Errorf("record payment event %s: %w", e.EventID, err)
	}
	return false, nil
}

// PaymentEvents lists the payment events handled for an order, oldest
// first (for tests and support).
func PaymentEvents(ctx context.Context, q Querier, orderID string) ([]PaymentEvent, error) {
	rows, err := q.Query(ctx, `
		SELECT event_id, order_id::text, payment_id, event_type, outcome, order_status, order_version
		FROM order_payment_events WHERE order_id = $1 ORDER BY received_at, event_id`, orderID)
	if err != nil {
		return nil, fmt.Errorf("payment events of %s: %w", orderID, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (PaymentEvent, error) {
		var e PaymentEvent
		var status string
		err := r.Scan(&e.EventID, &e.OrderID, &e.PaymentID, &e.EventType, &e.Outcome, &status, &e.OrderVersion)
		e.OrderStatus = order.Status(status)
		return e, err
	})
}
