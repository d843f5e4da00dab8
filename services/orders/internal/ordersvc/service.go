// Package ordersvc holds orders' use cases: place an order priced by
// catalog, cancel it, apply payment outcomes, read orders. Every change is
// a compare-and-set on (id, version) that writes its event through the
// outbox in the caller's transaction: the order changes if and only if its
// event will be published.
package ordersvc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/orders/internal/order"
	"github.com/shopfloor/shopfloor/services/orders/internal/orderpg"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

// Pricer looks products up in catalog (catalogapi.Client).
type Pricer interface {
	Batch(ctx context.Context, q catalogapi.BatchQuery) (catalogapi.ProductBatch, error)
}

var _ Pricer = (*catalogapi.Client)(nil)

// Service runs the use cases.
type Service struct {
	pool   *pgxpool.Pool
	pricer Pricer
	outbox *outbox.Outbox
	now    func() time.Time
}

// New returns the service. ob must publish to ordersapi.Stream.
func New(pool *pgxpool.Pool, pricer Pricer, ob *outbox.Outbox, now func() time.Time) (*Service, error) {
	if ob.Stream() != ordersapi.Stream {
		return nil, fmt.Errorf("ordersvc: outbox publishes to %s, want %s", ob.Stream(), ordersapi.Stream)
	}
	return &Service{pool: pool, pricer: pricer, outbox: ob, now: now}, nil
}

// Pool is the database the service writes to (for the idempotency store,
// which opens the transactions Place and Cancel run in).
func (s *Service) Pool() *pgxpool.Pool { return s.pool }

// UnpricedError names the lines catalog cannot sell: unknown, not public
// (draft or archived), or without a price in the order's currency.
type UnpricedError struct{ Lines []UnpricedLine }

// UnpricedLine is one line catalog cannot sell.
type UnpricedLine struct {
	// Index is the line's position in the request's items.
	Index int
	// Ref is how the request named the product ("product_id" or "sku").
	Ref, Value string
}

func (e *UnpricedError) Error() string {
	parts := make([]string, len(e.Lines))
	for i, l := range e.Lines {
		parts[i] = fmt.Sprintf("items/%d (%s %s)", l.Index, l.Ref, l.Value)
	}
	return "not on sale: " + strings.Join(parts, ", ")
}

// CatalogRejectedError is a 4xx from catalog to a request orders built: a
// bug or a contract drift between the two services, not the client's
// mistake.
type CatalogRejectedError struct{ Err error }

func (e *CatalogRejectedError) Error() string {
	return "catalog rejected the price lookup: " + e.Err.Error()
}
func (e *CatalogRejectedError) Unwrap() error { return e.Err }

// Price asks catalog for the current price of every line of in, in one
// batch call for the lines named by id and those named by sku. in must have
// passed order.ValidateCreate. Errors: *UnpricedError, an error wrapping
// catalogapi.ErrUnavailable, *CatalogRejectedError.
func (s *Service) Price(ctx context.Context, in ordersapi.CreateOrder) ([]order.Line, error) {
	var ids, skus []string
	for _, it := range in.Items {
		if it.ProductID != "" {
			ids = append(ids, strings.ToLower(it.ProductID))
		} else {
			skus = append(skus, it.SKU)
		}
	}
	batch, err := s.pricer.Batch(ctx, catalogapi.BatchQuery{IDs: ids, SKUs: skus, Currency: in.Currency})
	var pe *catalogapi.ProblemError
	if errors.As(err, &pe) {
		return nil, &CatalogRejectedError{Err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("price %d lines: %w", len(in.Items), err)
	}
	// Catalog answers the ids' products first, in the order asked (skipping
	// missing ones), then the skus' products.
	byID, bySKU := map[string]catalogapi.Product{}, map[string]catalogapi.Product{}
	rest := batch.Products
	for _, id := range ids {
		if len(rest) > 0 && rest[0].ID == id {
			byID[id], rest = rest[0], rest[1:]
		}
	}
	for _, p := range rest {
		bySKU[p.SKU] = p
	}
	lines := make([]order.Line, len(in.Items))
	var unpriced []UnpricedLine
	for i, it := range in.Items {
		p, ok := byID[strings.ToLower(it.ProductID)]
		ref, val := "product_id", it.ProductID
		if it.ProductID == "" {
			p, ok = bySKU[it.SKU]
			ref, val = "sku", it.SKU
		}
		if !ok || p.Status != "active" || p.Price.Currency != in.Currency {
			unpriced = append(unpriced, UnpricedLine{Index: i, Ref: ref, Value: val})
			continue
		}
		lines[i] = order.Line{ProductID: p.ID, SKU: p.SKU, Name: p.Name, Quantity: it.Quantity,
			UnitPriceMinor: p.Price.AmountMinor, CatalogVersion: p.Version}
	}
	if len(unpriced) > 0 {
		return nil, &UnpricedError{Lines: unpriced}
	}
	return lines, nil
}

// Place writes the order, its lines (priced by Price, before tx began)
// and its order.placed event in tx. in must have passed
// order.ValidateCreate. An order payments could not charge (its total or
// currency outside payments' limits) is refused with a
// *order.PaymentLimitError and nothing is written: payments would only
// dead-letter its order.placed.
func (s *Service) Place(ctx context.Context, tx pgx.Tx, in ordersapi.CreateOrder, lines []order.Line) (order.Order, error) {
	if len(lines) != len(in.Items) {
		return order.Order{}, fmt.Errorf("place: %d priced lines for %d items", len(lines), len(in.Items))
	}
	total, err := order.Total(lines)
	if err != nil {
		return order.Order{}, &order.ValidationError{Fields: []order.FieldError{{Pointer: "/items", Message: err.Error()}}}
	}
	if err := order.CheckPayable(in.Currency, total); err != nil {
		return order.Order{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return order.Order{}, fmt.Errorf("order id: %w", err)
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	o := order.Order{ID: id.String(), CustomerID: in.CustomerID, CustomerEmail: in.CustomerEmail,
		Status: order.PendingPayment, Version: 1, Currency: in.Currency, TotalMinor: total, Lines: lines,
		Shipping: in.Shipping, CreatedAt: now, UpdatedAt: now}
	if err := orderpg.Insert(ctx, tx, o); err != nil {
		return order.Order{}, err
	}
	api := o.API()
	ev, err := events.New(ordersapi.Source, ordersapi.EventOrderPlaced, o.ID, ordersapi.SchemaVersion, o.Version, ordersapi.OrderPlaced{
		OrderID: o.ID, CustomerID: o.CustomerID, CustomerEmail: o.CustomerEmail, Currency: o.Currency,
		TotalMinor: o.TotalMinor, Items: api.Items, Version: o.Version, PaymentMethod: in.PaymentMethod}, now)
	if err != nil {
		return order.Order{}, fmt.Errorf("order.placed event: %w", err)
	}
	if err := s.outbox.Publish(ctx, tx, ev); err != nil {
		return order.Order{}, err
	}
	return o, nil
}

// Get reads an order (a strong read from PostgreSQL).
func (s *Service) Get(ctx context.Context, id string) (order.Order, error) {
	return orderpg.Get(ctx, s.pool, id, false)
}

// Events returns the outbox rows of order id (its events and where each
// was published), oldest first.
func (s *Service) Events(ctx context.Context, id string) ([]outbox.Record, error) {
	return outbox.Events(ctx, s.pool, id, 100)
}

// List reads a page of a customer's orders, newest first. pageToken is the
// previous page's NextPageToken (empty for the first page).
func (s *Service) List(ctx context.Context, customerID, pageToken string, limit int) ([]order.Order, string, error) {
	orders, err := orderpg.ListByCustomer(ctx, s.pool, customerID, pageToken, limit+1)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(orders) > limit {
		orders = orders[:limit]
		next = orders[limit-1].ID
	}
	return orders, next, nil
}

// maxCASAttempts bounds the compare-and-set loop of a transition: each
// lost race re-reads the order, and a lost race means the order moved on,
// which the next read shows.
const maxCASAttempts = 3

// transition runs decide on the current order and stores its result with
// a compare-and-set on the version read, retrying on a lost race. decide
// returns the changed order and its events, or the order unchanged (same
// version) and events to publish without a change. ifVersion > 0 requires
// the order to be at that version (If-Match): otherwise ErrVersionMismatch.
func (s *Service) transition(ctx context.Context, tx pgx.Tx, id string, ifVersion int64,
	decide func(order.Order) (order.Order, []events.Envelope, error)) (order.Order, error) {
	for attempt := 1; ; attempt++ {
		cur, err := orderpg.Get(ctx, tx, id, false)
		if err != nil {
			return order.Order{}, err
		}
		if ifVersion > 0 && cur.Version != ifVersion {
			return cur, fmt.Errorf("order %s is at version %d, not %d: %w", id, cur.Version, ifVersion, order.ErrVersionMismatch)
		}
		next, evs, err := decide(cur)
		if err != nil {
			return cur, err
		}
		if next.Version != cur.Version {
			err = orderpg.CompareAndSet(ctx, tx, next, cur.Version)
			if errors.Is(err, order.ErrVersionMismatch) && ifVersion == 0 && attempt < maxCASAttempts {
				continue
			}
			if err != nil {
				return cur, err
			}
		}
		if err := s.outbox.Publish(ctx, tx, evs...); err != nil {
			return cur, err
		}
		return next, nil
	}
}

func (s *Service) statusEvent(typ string, o order.Order, reason string) (events.Envelope, error) {
	return events.New(ordersapi.Source, typ, o.ID, ordersapi.SchemaVersion, o.Version, ordersapi.OrderStatusChanged{
		OrderID: o.ID, CustomerID: o.CustomerID, CustomerEmail: o.CustomerEmail, Status: string(o.Status),
		Version: o.Version, Currency: o.Currency, TotalMinor: o.TotalMinor, PaymentID: o.PaymentID, Reason: reason}, o.UpdatedAt)
}

// Cancel cancels order id in tx (pending_payment or payment_failed →
// cancelled) and writes order.cancelled. owner, when not empty, is the
// only customer allowed to: another customer's order is order.ErrNotFound
// (checked before anything else, so no answer tells that it exists).
// ifVersion > 0 is the If-Match version. Errors: order.ErrNotFound,
// order.ErrVersionMismatch, *order.TransitionError (the order is paid or
// already cancelled).
func (s *Service) Cancel(ctx context.Context, tx pgx.Tx, owner, id string, ifVersion int64, reason string) (order.Order, error) {
	if owner != "" {
		cur, err := orderpg.Get(ctx, tx, id, false)
		if err != nil {
			return order.Order{}, err
		}
		if cur.CustomerID != owner {
			return order.Order{}, fmt.Errorf("order %s of another customer: %w", id, order.ErrNotFound)
		}
	}
	return s.transition(ctx, tx, id, ifVersion, func(cur order.Order) (order.Order, []events.Envelope, error) {
		next, err := cur.Transition(order.Cancelled, s.now().UTC().Truncate(time.Microsecond))
		if err != nil {
			return cur, nil, err
		}
		ev, err := s.statusEvent(ordersapi.EventOrderCancelled, next, reason)
		return next, []events.Envelope{ev}, err
	})
}

// PaymentOutcome is what ApplyPayment did.
type PaymentOutcome struct {
	// Result is orderpg.OutcomeApplied, OutcomeIgnored or
	// OutcomeRefundRequired, as recorded in order_payment_events.
	Result string
	// Mismatch is set when this event asked for the refund of a payment
	// whose amount or currency is not the order's total
	// (ordersapi.ReasonAmountMismatch or ReasonCurrencyMismatch): once per
	// payment, however often it is reported.
	Mismatch string
}

// ApplyPayment applies a payment event (payment.succeeded or
// payment.failed, parent) to its order in tx and records what it did:
//
//   - succeeded with the order's total and currency, order pending_payment
//     → paid, order.paid (applied);
//   - succeeded with another amount or currency (DESIGN.md invariant 8),
//     order pending_payment → payment_failed with the mismatch as its
//     reason, order.payment_failed and order.refund_required for that
//     payment (refund_required; ADR 0010, "Mismatched payments");
//   - failed, order pending_payment → payment_failed, order.payment_failed
//     (applied);
//   - succeeded for the payment that already paid the order, or failed for
//     an order no longer pending: recorded, not applied (ignored);
//   - succeeded for an order that cannot take it (cancelled while the
//     payment was in flight, payment_failed, or paid by another payment):
//     the order does not change and order.refund_required asks payments
//     to refund that payment (refund_required).
//
// At most one order.refund_required per payment: a second event for a
// payment whose refund was asked for is recorded as ignored. Errors:
// order.ErrNotFound (no such order: the event is poison), or database
// errors (retry).
func (s *Service) ApplyPayment(ctx context.Context, tx pgx.Tx, parent events.Envelope, p PaymentEvent) (PaymentOutcome, error) {
	var (
		outcome  string
		mismatch string
	)
	now := s.now().UTC().Truncate(time.Microsecond)
	o, err := s.transition(ctx, tx, p.OrderID, 0, func(cur order.Order) (order.Order, []events.Envelope, error) {
		var (
			next   = cur
			typ    string
			reason string
			err    error
		)
		mismatch = ""
		if p.Succeeded {
			mismatch = cur.PaymentMismatch(p.AmountMinor, p.Currency)
		}
		switch {
		case cur.Status == order.PendingPayment && p.Succeeded && mismatch == "":
			next, err = cur.Transition(order.Paid, now)
			typ, outcome = ordersapi.EventOrderPaid, orderpg.OutcomeApplied
		case cur.Status == order.PendingPayment && p.Succeeded:
			// Charged, but not what the order costs: the order is not
			// paid, its one payment attempt is used up, and the charge
			// is refunded (below).
			next, err = cur.Transition(order.PaymentFailed, now)
			typ, reason, outcome = ordersapi.EventOrderPaymentFailed, mismatch, orderpg.OutcomeRefundRequired
		case cur.Status == order.PendingPayment:
			next, err = cur.Transition(order.PaymentFailed, now)
			typ, reason, outcome = ordersapi.EventOrderPaymentFailed, p.Reason, orderpg.OutcomeApplied
		case p.Succeeded && (cur.Status != order.Paid || cur.PaymentID != p.PaymentID):
			outcome = orderpg.OutcomeRefundRequired
			return cur, nil, nil
		default:
			outcome = orderpg.OutcomeIgnored
			return cur, nil, nil
		}
		if err != nil {
			return cur, nil, err
		}
		next.PaymentID = p.PaymentID
		ev, err := s.statusEvent(typ, next, reason)
		if err != nil {
			return cur, nil, err
		}
		return next, []events.Envelope{ev.CausedBy(parent)}, nil
	})
	if err != nil {
		return PaymentOutcome{}, err
	}
	recorded, err := orderpg.RecordPaymentEvent(ctx, tx, orderpg.PaymentEvent{EventID: parent.ID, OrderID: o.ID,
		PaymentID: p.PaymentID, EventType: parent.Type, Outcome: outcome, OrderStatus: o.Status, OrderVersion: o.Version})
	if err != nil {
		return PaymentOutcome{}, err
	}
	if outcome != orderpg.OutcomeRefundRequired {
		return PaymentOutcome{Result: outcome}, nil
	}
	if !recorded {
		return PaymentOutcome{Result: orderpg.OutcomeIgnored}, nil // this payment's refund was already asked for
	}
	reason := mismatch
	if reason == "" {
		reason = ordersapi.ReasonOrderNotPayable
	}
	ev, err := events.New(ordersapi.Source, ordersapi.EventOrderRefundRequired, o.ID, ordersapi.SchemaVersion, o.Version, ordersapi.RefundRequired{
		OrderID: o.ID, PaymentID: p.PaymentID, AmountMinor: p.AmountMinor, Currency: p.Currency, Status: string(o.Status),
		Version: o.Version, Reason: reason}, now)
	if err != nil {
		return PaymentOutcome{}, fmt.Errorf("order.refund_required event: %w", err)
	}
	if err := s.outbox.Publish(ctx, tx, ev.CausedBy(parent)); err != nil {
		return PaymentOutcome{}, err
	}
	return PaymentOutcome{Result: outcome, Mismatch: mismatch}, nil
}

// PaymentEvent is a payment outcome as ApplyPayment needs it.
type PaymentEvent struct {
	OrderID, PaymentID string
	// Succeeded: payment.succeeded; otherwise payment.failed.
	Succeeded   bool
	AmountMinor int64
	Currency    string
	Reason      string
}
