// Package order holds the order's domain rules, without I/O: what a valid
// checkout request is, how totals are computed, and which status changes
// the state machine allows.
//
// State machine (DESIGN.md, "orders"):
//
//	pending_payment ──payment.succeeded──▶ paid            (its amount and currency)
//	pending_payment ──payment.succeeded──▶ payment_failed  (another amount or currency; refunded)
//	pending_payment ──payment.failed─────▶ payment_failed
//	pending_payment ──cancel─────────────▶ cancelled
//	payment_failed  ──cancel─────────────▶ cancelled
//
// Every change bumps the order's version by one and is stored as a
// compare-and-set on (id, version). paid and cancelled are final.
package order

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

// Status is an order's state.
type Status string

// The statuses; their strings are the API's and the events'.
const (
	PendingPayment Status = ordersapi.StatusPendingPayment
	Paid           Status = ordersapi.StatusPaid
	PaymentFailed  Status = ordersapi.StatusPaymentFailed
	Cancelled      Status = ordersapi.StatusCancelled
)

// transitions lists, for each status, the statuses it may change to.
var transitions = map[Status][]Status{
	PendingPayment: {Paid, PaymentFailed, Cancelled},
	PaymentFailed:  {Cancelled},
	Paid:           nil,
	Cancelled:      nil,
}

// Statuses returns every status, in lifecycle order.
func Statuses() []Status { return []Status{PendingPayment, Paid, PaymentFailed, Cancelled} }

// Valid reports whether s is a known status.
func (s Status) Valid() bool { _, ok := transitions[s]; return ok }

// CanTransition reports whether the state machine allows from → to.
func CanTransition(from, to Status) bool { return slices.Contains(transitions[from], to) }

// Errors of the domain; stores and use cases wrap them.
var (
	// ErrNotFound: no order with that id.
	ErrNotFound = errors.New("order not found")
	// ErrVersionMismatch: the order changed since the caller read it (the
	// compare-and-set lost, or If-Match named an older version).
	ErrVersionMismatch = errors.New("order version mismatch")
)

// TransitionError is an illegal status change; it carries the order's
// current status and version so that a 409 can show them.
type TransitionError struct {
	From, To Status
	Version  int64
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("order is %s (version %d): cannot become %s", e.From, e.Version, e.To)
}

// Order is an order and its lines.
type Order struct {
	ID            string
	CustomerID    string
	CustomerEmail string
	Status        Status
	Version       int64
	Currency      string
	TotalMinor    int64
	Lines         []Line
	Shipping      ordersapi.Address
	// PaymentID is the payment that paid the order (or last failed it).
	PaymentID string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Line is one product, its quantity and the price quoted by catalog.
type Line struct {
	ProductID      string
	SKU            string
	Name           string
	Quantity       int
	UnitPriceMinor int64
	CatalogVersion int64
}

// Transition returns o changed to status to, version bumped, or a
// *TransitionError when the state machine forbids it. o is not modified.
func (o Order) Transition(to Status, now time.Time) (Order, error) {
	if !CanTransition(o.Status, to) {
		return o, &TransitionError{From: o.Status, To: to, Version: o.Version}
	}
	o.Status = to
	o.Version++
	o.UpdatedAt = now
	return o, nil
}

// PaymentMismatch compares a payment with o's total (DESIGN.md invariant
// 8: an order is paid only by a payment of its own amount and currency).
// It returns "" when the payment matches, else ordersapi.ReasonCurrencyMismatch
// (checked first: amounts in different currencies do not compare) or
// ordersapi.ReasonAmountMismatch. A payment for more is a mismatch too: the
// customer was overcharged.
func (o Order) PaymentMismatch(amountMinor int64, currency string) string {
	switch {
	case currency != o.Currency:
		return ordersapi.ReasonCurrencyMismatch
	case amountMinor != o.TotalMinor:
		return ordersapi.ReasonAmountMismatch
	}
	return ""
}

// Total is the sum of the lines' quantity × unit price; it reports an
// overflow instead of wrapping.
func Total(lines []Line) (int64, error) {
	var total int64
	for _, l := range lines {
		if l.UnitPriceMinor < 0 || l.Quantity < 0 {
			return 0, errors.New("negative price or quantity")
		}
		sub := l.UnitPriceMinor * int64(l.Quantity)
		if l.Quantity != 0 && sub/int64(l.Quantity) != l.UnitPriceMinor || total+sub < total {
			return 0, errors.New("order total overflows")
		}
		total += sub
	}
	return total, nil
}

// API renders o as the API and the events show it.
func (o Order) API() ordersapi.Order {
	lines := make([]ordersapi.Line, len(o.Lines))
	for i, l := range o.Lines {
		lines[i] = ordersapi.Line{ProductID: l.ProductID, SKU: l.SKU, Name: l.Name, Quantity: l.Quantity,
			UnitPriceMinor: l.UnitPriceMinor, CatalogVersion: l.CatalogVersion}
	}
	return ordersapi.Order{ID: o.ID, CustomerID: o.CustomerID, CustomerEmail: o.CustomerEmail, Status: string(o.Status),
		Version: o.Version, Currency: o.Currency, TotalMinor: o.TotalMinor, Items: lines, Shipping: o.Shipping,
		PaymentID: o.PaymentID, CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt}
}
