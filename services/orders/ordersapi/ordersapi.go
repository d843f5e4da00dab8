// Package ordersapi is orders' public contract: the requests and
// representations of its HTTP API and the events it publishes on the ORDERS
// stream. Other services import orders only through this package.
//
// Every ORDERS event is keyed by order id (the event's subject), so a
// consumer group sees one order's events in the order they were committed;
// its aggregate version is the order's version after the change, so a
// projection can drop anything older than what it holds.
package ordersapi

import (
	"time"

	"github.com/shopfloor/shopfloor/pkg/events"
)

// Stream is the stream orders publishes to.
const Stream = "ORDERS"

// Source is the CloudEvents source of orders' events.
const Source = "orders"

// SchemaVersion is the schemaversion of every event type orders publishes
// now. A breaking change to a payload is a new version of its type, added
// to Schemas next to the old one (package events, "Reading and evolving
// schemas").
const SchemaVersion = 1

// Event types, schema version 1.
const (
	// EventOrderPlaced: an order was accepted; payments charges it.
	EventOrderPlaced = "order.placed"
	// EventOrderPaid: its payment succeeded.
	EventOrderPaid = "order.paid"
	// EventOrderPaymentFailed: its payment failed for good.
	EventOrderPaymentFailed = "order.payment_failed"
	// EventOrderCancelled: the customer (or support) cancelled it.
	EventOrderCancelled = "order.cancelled"
	// EventOrderRefundRequired: a payment succeeded that the order cannot
	// take (cancelled while the payment was in flight, already paid by
	// another payment, or a payment of another amount or currency than the
	// order's total); payments refunds that payment. At most one per
	// payment.
	EventOrderRefundRequired = "order.refund_required"
)

// Order statuses.
const (
	StatusPendingPayment = "pending_payment"
	StatusPaid           = "paid"
	StatusPaymentFailed  = "payment_failed"
	StatusCancelled      = "cancelled"
)

// CreateOrder is the body of POST /v1/orders.
type CreateOrder struct {
	CustomerID    string      `json:"customer_id"`
	CustomerEmail string      `json:"customer_email"`
	Currency      string      `json:"currency"`
	Items         []LineInput `json:"items"`
	Shipping      Address     `json:"shipping_address"`
	// PaymentMethod is the provider's token for the customer's payment
	// method ("tok_…" or "pm_…"), never card data. Optional: payments
	// uses its default (the sandbox's test card) when it is empty.
	PaymentMethod string `json:"payment_method,omitempty"`
}

// LineInput names a product by ProductID or SKU (exactly one) and a
// quantity of 1..100.
type LineInput struct {
	ProductID string `json:"product_id,omitempty"`
	SKU       string `json:"sku,omitempty"`
	Quantity  int    `json:"quantity"`
}

// Address is a shipping address.
type Address struct {
	Name       string `json:"name"`
	Line1      string `json:"line1"`
	Line2      string `json:"line2,omitempty"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
}

// Order is an order as the API returns it.
type Order struct {
	ID            string    `json:"id"`
	CustomerID    string    `json:"customer_id"`
	CustomerEmail string    `json:"customer_email"`
	Status        string    `json:"status"`
	Version       int64     `json:"version"`
	Currency      string    `json:"currency"`
	TotalMinor    int64     `json:"total_minor"`
	Items         []Line    `json:"items"`
	Shipping      Address   `json:"shipping_address"`
	PaymentID     string    `json:"payment_id,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// Line is an order line with the price catalog quoted when it was placed.
type Line struct {
	ProductID      string `json:"product_id"`
	SKU            string `json:"sku"`
	Name           string `json:"name"`
	Quantity       int    `json:"quantity"`
	UnitPriceMinor int64  `json:"unit_price_minor"`
	// CatalogVersion is the product version the price was read from.
	CatalogVersion int64 `json:"catalog_version"`
}

// OrderList is a page of a customer's orders, newest first;
// NextPageToken is empty on the last page.
type OrderList struct {
	Orders        []Order `json:"orders"`
	NextPageToken string  `json:"next_page_token,omitempty"`
}

// OrderEvent is one event the order's changes wrote to orders' outbox (in
// the same transaction as the change), and where the relay published it.
type OrderEvent struct {
	EventID   string    `json:"event_id"`
	Type      string    `json:"type"`
	Stream    string    `json:"stream"`
	CreatedAt time.Time `json:"created_at"`
	// PublishedAt is absent while the event waits in the outbox;
	// Partition and Sequence say where the broker stored it.
	PublishedAt *time.Time `json:"published_at,omitempty"`
	Partition   *int       `json:"partition,omitempty"`
	Sequence    *int64     `json:"sequence,omitempty"`
	// PublishAttempts counts the relay's failed publishes; LastError is
	// the last one's (operators only).
	PublishAttempts int    `json:"publish_attempts"`
	LastError       string `json:"last_error,omitempty"`
	// TraceID is the trace the event belongs to (W3C trace context).
	TraceID string `json:"trace_id,omitempty"`
}

// OrderEventList is an order's events, oldest first (the outbox keeps
// published events for the relay's retention, 72 h by default).
type OrderEventList struct {
	Events []OrderEvent `json:"events"`
}

// OrderPlaced is the payload of order.placed: everything payments needs to
// charge and notifications needs to write, so neither calls orders back.
type OrderPlaced struct {
	OrderID       string `json:"order_id"`
	CustomerID    string `json:"customer_id"`
	CustomerEmail string `json:"customer_email"`
	Currency      string `json:"currency"`
	TotalMinor    int64  `json:"total_minor"`
	Items         []Line `json:"items"`
	Version       int64  `json:"version"`
	// PaymentMethod is the token the customer chose (empty: payments'
	// default). A token is a reference, not card data.
	PaymentMethod string `json:"payment_method,omitempty"`
}

// OrderStatusChanged is the payload of order.paid, order.payment_failed and
// order.cancelled.
type OrderStatusChanged struct {
	OrderID       string `json:"order_id"`
	CustomerID    string `json:"customer_id"`
	CustomerEmail string `json:"customer_email"`
	Status        string `json:"status"`
	Version       int64  `json:"version"`
	Currency      string `json:"currency"`
	TotalMinor    int64  `json:"total_minor"`
	// PaymentID is the payment that paid or failed (empty for a cancel).
	PaymentID string `json:"payment_id,omitempty"`
	// Reason says why a payment failed or who cancelled.
	Reason string `json:"reason,omitempty"`
}

// RefundRequired is the payload of order.refund_required.
type RefundRequired struct {
	OrderID   string `json:"order_id"`
	PaymentID string `json:"payment_id"`
	// AmountMinor and Currency are the payment's (what was charged and is
	// to be refunded), which may differ from the order's total.
	AmountMinor int64  `json:"amount_minor"`
	Currency    string `json:"currency"`
	// Status is the order's status after the payment: the status the
	// payment could not change, or payment_failed for a mismatch.
	Status  string `json:"status"`
	Version int64  `json:"version"`
	// Reason is why the order cannot take the payment, one of the
	// Reason* codes: ReasonAmountMismatch, ReasonCurrencyMismatch or
	// ReasonOrderNotPayable. Events written before the codes carried a
	// sentence ("order is cancelled (version 3)"); read an unknown value
	// as ReasonOrderNotPayable.
	Reason string `json:"reason"`
}

// Reasons of order.refund_required; a mismatch is also the reason of the
// order.payment_failed written with it. Stable, machine-readable.
const (
	// ReasonAmountMismatch: the payment's amount is not the order's total
	// (same currency).
	ReasonAmountMismatch = "amount_mismatch"
	// ReasonCurrencyMismatch: the payment's currency is not the order's
	// (whatever the amount).
	ReasonCurrencyMismatch = "currency_mismatch"
	// ReasonOrderNotPayable: the payment matches the order, but the order
	// no longer takes a payment: it is cancelled, payment_failed, or paid
	// by another payment (Status says which).
	ReasonOrderNotPayable = "order_not_payable"
)

// Schemas declares the events orders publishes, for events.CheckGolden
// (orders' golden files) and events.Readable (every consumer of ORDERS
// refuses a schemaversion it does not know). Each example has every
// field filled in, so that the golden files guard all of them.
func Schemas() []events.Schema {
	status := OrderStatusChanged{OrderID: "0190a3c1-5e2f-7b3d-9f01-6c2a8e4d1b71", CustomerID: "ada", CustomerEmail: "ada@example.com",
		Status: StatusPaymentFailed, Version: 2, Currency: "EUR", TotalMinor: 9800,
		PaymentID: "0190a3c1-5e2f-7b3d-9f01-6c2a8e4d1b72", Reason: "card_declined"}
	return []events.Schema{
		{Type: EventOrderPlaced, Version: SchemaVersion, Example: OrderPlaced{
			OrderID: status.OrderID, CustomerID: status.CustomerID, CustomerEmail: status.CustomerEmail, Currency: "EUR", TotalMinor: 9800,
			Items: []Line{{ProductID: "0190a3c1-5e2f-7b3d-9f01-6c2a8e4d1b70", SKU: "LAMP-OAK-01", Name: "Oak lamp", Quantity: 2,
				UnitPriceMinor: 4900, CatalogVersion: 3}},
			Version: 1, PaymentMethod: "tok_visa"}},
		{Type: EventOrderPaid, Version: SchemaVersion, Example: status},
		{Type: EventOrderPaymentFailed, Version: SchemaVersion, Example: status},
		{Type: EventOrderCancelled, Version: SchemaVersion, Example: status},
		{Type: EventOrderRefundRequired, Version: SchemaVersion, Example: RefundRequired{OrderID: status.OrderID,
			PaymentID: status.PaymentID, AmountMinor: 9800, Currency: "EUR", Status: StatusCancelled, Version: 3, Reason: ReasonOrderNotPayable}},
	}
}
