// Package paymentsapi is payments' public contract: the events it publishes
// on the PAYMENTS stream, its HTTP API's representations, and the limits
// of what it can charge (CheckAmount: currencies, smallest and largest
// amount), which orders applies at checkout. Other services import
// payments only through this package.
//
// PAYMENTS events are keyed by order id, not payment id, so that a consumer
// group sees every payment event of one order in commit order.
package paymentsapi

import (
	"time"

	"github.com/shopfloor/shopfloor/pkg/events"
)

// Stream is the stream payments publishes to.
const Stream = "PAYMENTS"

// Audience is the audience of access tokens for payments' API.
const Audience = "payments"

// Source is the CloudEvents source of payments' events.
const Source = "payments"

// SchemaVersion is the schemaversion of every event type payments
// publishes now (see ordersapi.SchemaVersion).
const SchemaVersion = 1

// Event types, schema version 1.
const (
	// EventPaymentSucceeded: the provider charged the payment.
	EventPaymentSucceeded = "payment.succeeded"
	// EventPaymentFailed: the payment failed for good (declined, invalid,
	// or retries exhausted).
	EventPaymentFailed = "payment.failed"
	// EventPaymentRefunded: a succeeded payment was refunded.
	EventPaymentRefunded = "payment.refunded"
)

// PaymentResult is the payload of every PAYMENTS event.
type PaymentResult struct {
	PaymentID   string `json:"payment_id"`
	OrderID     string `json:"order_id"`
	AmountMinor int64  `json:"amount_minor"`
	Currency    string `json:"currency"`
	// ChargeID is the provider's charge (empty when nothing was charged).
	ChargeID string `json:"charge_id,omitempty"`
	// Reason is a short machine-readable cause of a failure, such as
	// "card_declined" or "retries_exhausted".
	Reason string `json:"reason,omitempty"`
}

// Payment statuses.
const (
	StatusPending   = "pending"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusRefunded  = "refunded"
)

// Failure reasons that are not the provider's decline codes.
const (
	// ReasonRetriesExhausted: the provider could not be reached (or kept
	// refusing) for every allowed attempt, and the reconciler then found
	// no charge for the payment's key after the grace period: nothing was
	// charged (ADR 0026). Attempts recorded so by older versions (ADR 0012)
	// are reconciled by a redrive, which never charges anew.
	ReasonRetriesExhausted = "retries_exhausted"
	// ReasonInvalidRequest: the provider rejected the request as invalid (a
	// bug, not the customer's card); the job is in the DLQ.
	ReasonInvalidRequest = "invalid_request"
)

// CreatePayment is the body of POST /v1/payments.
type CreatePayment struct {
	OrderID     string `json:"order_id"`
	AmountMinor int64  `json:"amount_minor"`
	Currency    string `json:"currency"`
	// PaymentMethod is the provider's token ("tok_…", "pm_…"), never card
	// data.
	PaymentMethod string `json:"payment_method"`
}

// Payment is a payment attempt as the API returns it.
type Payment struct {
	ID            string    `json:"id"`
	OrderID       string    `json:"order_id"`
	Status        string    `json:"status"`
	AmountMinor   int64     `json:"amount_minor"`
	Currency      string    `json:"currency"`
	ChargeID      string    `json:"charge_id,omitempty"`
	DeclineCode   string    `json:"decline_code,omitempty"`
	FailureReason string    `json:"failure_reason,omitempty"`
	RefundedMinor int64     `json:"refunded_minor,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
	// OutcomeUnknownSince is set on a pending payment whose charge the
	// worker gave up without a definite answer: payments' reconciler asks
	// the provider and settles it (ADR 0026).
	OutcomeUnknownSince *time.Time `json:"outcome_unknown_since,omitempty"`
	// ProviderCalls are the workers' calls to the payment provider for
	// this payment, oldest first: the history behind Status (retries,
	// an answer lost after a charge and the lookup that found it).
	ProviderCalls []ProviderCall `json:"provider_calls,omitempty"`
}

// ProviderCall is one call a worker made to the payment provider.
type ProviderCall struct {
	// Attempt is the job's delivery the call was made in (1 for the first).
	Attempt int `json:"attempt"`
	// Operation is one of the Op* values.
	Operation string `json:"operation"`
	// Outcome is one of the Outcome* values.
	Outcome string `json:"outcome"`
	// RetryAfterMs is the provider's Retry-After, for OutcomeRateLimited.
	RetryAfterMs *int64    `json:"retry_after_ms,omitempty"`
	DurationMs   int64     `json:"duration_ms"`
	At           time.Time `json:"at"`
}

// ProviderCall operations.
const (
	OpCharge     = "charge"
	OpFindCharge = "find_charge"
	OpRefund     = "refund"
)

// ProviderCall outcomes: what the answer meant (the classes of payments'
// provider client).
const (
	// OutcomeCharged, OutcomeFound, OutcomeRefunded: done (for a
	// lookup: the charge exists, succeeded or declined).
	OutcomeCharged  = "charged"
	OutcomeFound    = "found"
	OutcomeRefunded = "refunded"
	// OutcomeDeclined: the card refused the charge (final).
	OutcomeDeclined = "declined"
	// OutcomeNotFound: a lookup found no charge for the key.
	OutcomeNotFound = "not_found"
	// OutcomeRateLimited: 429; nothing was processed; retried after
	// RetryAfterMs.
	OutcomeRateLimited = "rate_limited"
	// OutcomeTransient: certainly not processed (refused connection, a
	// 5xx the provider produced); retried with backoff.
	OutcomeTransient = "transient"
	// OutcomeAmbiguous: maybe processed, answer lost (a timeout after the
	// request was sent); the charge is looked up before any retry.
	OutcomeAmbiguous = "ambiguous"
	// OutcomeInvalid: the provider rejected the request as wrong; the job
	// goes to the DLQ.
	OutcomeInvalid = "invalid"
)

// OpenRefund is a refund on payments' admin API (GET /v1/admin/refunds,
// POST /v1/admin/refunds/{id}/abandon): pending (retrying until done),
// failed (refused by the provider, waiting for an operator), or, after an
// abandon, abandoned.
type OpenRefund struct {
	ID          string `json:"id"`
	PaymentID   string `json:"payment_id"`
	OrderID     string `json:"order_id"`
	AmountMinor int64  `json:"amount_minor"`
	Status      string `json:"status"`
	// LastError is why it failed, or the operator's reason once abandoned.
	LastError string `json:"last_error,omitempty"`
	// Attempts is its job's receive count so far.
	Attempts  int       `json:"attempts"`
	CreatedAt time.Time `json:"created_at,omitempty"`
}

// Schemas declares the events payments publishes, for events.CheckGolden
// and events.Readable (see ordersapi.Schemas).
func Schemas() []events.Schema {
	example := PaymentResult{PaymentID: "0190a3c1-5e2f-7b3d-9f01-6c2a8e4d1b72", OrderID: "0190a3c1-5e2f-7b3d-9f01-6c2a8e4d1b71",
		AmountMinor: 9800, Currency: "EUR", ChargeID: "ch_0190a3c15e2f", Reason: "card_declined"}
	return []events.Schema{
		{Type: EventPaymentSucceeded, Version: SchemaVersion, Example: example},
		{Type: EventPaymentFailed, Version: SchemaVersion, Example: example},
		{Type: EventPaymentRefunded, Version: SchemaVersion, Example: example},
	}
}
