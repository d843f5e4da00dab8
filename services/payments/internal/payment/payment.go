// Package payment holds payments' domain rules, without I/O: a payment
// attempt, its refund, which status changes are allowed, and what a valid
// payment request is.
//
//	pending ──charge succeeded──▶ succeeded ──refund succeeded──▶ refunded
//	pending ──declined / invalid / retries exhausted──▶ failed
//	pending (outcome unknown) ──reconciler finds a charge──▶ succeeded
//	pending (outcome unknown) ──no charge after the grace──▶ failed (retries_exhausted)
//	failed (retries_exhausted) ──redrive finds the charge──▶ succeeded
//
// An attempt whose last delivery failed has an unknown outcome: it stays
// pending and the reconciler asks the provider (ADR 0026). The last edge is
// ADR 0012's reconciliation of an attempt recorded failed by an older
// version: a redrive asks the provider and records what it finds, without
// charging again.
package payment

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// Errors of the domain.
var (
	// ErrNotFound: no payment (or refund) with that id.
	ErrNotFound = errors.New("payment not found")
	// ErrExists: the order already has a payment attempt.
	ErrExists = errors.New("a payment for this order exists")
)

// Payment is a payment attempt. Its ID is the provider's idempotency key
// for the charge: every retry of the charge sends the same key.
type Payment struct {
	ID      string
	OrderID string
	// CustomerID is the order's customer (the token subject of the
	// customer who placed it), from order.placed. Empty for a payment an
	// operator created through the API whose order.placed has not been
	// applied yet: then only operators may read it (ADR 0022). Not part
	// of the API representation.
	CustomerID     string
	IdempotencyKey string
	AmountMinor    int64
	Currency       string
	PaymentMethod  string
	Status         string
	ChargeID       string
	DeclineCode    string
	FailureReason  string
	RefundedMinor  int64
	CreatedAt      time.Time
	UpdatedAt      time.Time
	// OutcomeUnknownSince: the worker gave the charge up without a
	// definite answer; the reconciler owns it (zero otherwise).
	OutcomeUnknownSince time.Time
}

// Final reports whether no more charge attempts may be made: succeeded,
// refunded, or failed for a reason other than exhausted retries.
func (p Payment) Final() bool {
	switch p.Status {
	case paymentsapi.StatusPending:
		return false
	case paymentsapi.StatusFailed:
		return p.FailureReason != paymentsapi.ReasonRetriesExhausted
	}
	return true
}

// API renders p for the API.
func (p Payment) API() paymentsapi.Payment {
	a := paymentsapi.Payment{ID: p.ID, OrderID: p.OrderID, Status: p.Status, AmountMinor: p.AmountMinor,
		Currency: p.Currency, ChargeID: p.ChargeID, DeclineCode: p.DeclineCode, FailureReason: p.FailureReason,
		RefundedMinor: p.RefundedMinor, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
	if !p.OutcomeUnknownSince.IsZero() && p.Status == paymentsapi.StatusPending {
		t := p.OutcomeUnknownSince.UTC()
		a.OutcomeUnknownSince = &t
	}
	return a
}

// APIWithCalls is API with the payment's provider calls.
func (p Payment) APIWithCalls(calls []paymentsapi.ProviderCall) paymentsapi.Payment {
	a := p.API()
	a.ProviderCalls = calls
	return a
}

// Refund is the refund of a succeeded payment (at most one per payment).
type Refund struct {
	ID               string
	PaymentID        string
	OrderID          string
	AmountMinor      int64
	Status           string
	ProviderRefundID string
	FailureReason    string
}

var tokenRE = regexp.MustCompile(`^(tok|pm)_[A-Za-z0-9_]{1,64}$`)

// ValidToken reports whether s looks like a provider token.
func ValidToken(s string) bool { return tokenRE.MatchString(s) }

// FieldError is one invalid field of a request.
type FieldError struct{ Field, Message string }

// ValidationError lists the invalid fields of a request.
type ValidationError struct{ Fields []FieldError }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid payment: " + strings.Join(parts, "; ")
}

// Validate checks a payment request: the order id, the amount and currency
// against payments' limits (paymentsapi.CheckAmount) and the token.
func Validate(in paymentsapi.CreatePayment) error {
	var fe []FieldError
	if u, err := uuid.Parse(in.OrderID); err != nil || u.String() != in.OrderID {
		fe = append(fe, FieldError{"order_id", "must be an order id (a lower-case UUID)"})
	}
	// The limits are paymentsapi's, the declaration orders checks a
	// checkout against too.
	var le *paymentsapi.LimitError
	if errors.As(paymentsapi.CheckAmount(in.AmountMinor, in.Currency), &le) {
		if le.Reason == paymentsapi.LimitCurrency {
			fe = append(fe, FieldError{"currency", "must be one of " + strings.Join(paymentsapi.Currencies(), ", ")})
		} else {
			maxMinor, _ := paymentsapi.MaxAmountMinor(in.Currency)
			fe = append(fe, FieldError{"amount_minor", fmt.Sprintf("must be %d..%d (minor units of %s)", paymentsapi.MinAmountMinor, maxMinor, in.Currency)})
		}
	}
	if !ValidToken(in.PaymentMethod) {
		fe = append(fe, FieldError{"payment_method", "must be a payment method token such as tok_visa (never card data)"})
	}
	if len(fe) > 0 {
		return &ValidationError{Fields: fe}
	}
	return nil
}
