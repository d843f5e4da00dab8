// Package notificationsapi is notifications' public contract: the
// representations of its HTTP API, the notification kinds and statuses.
// Other services (and tests of other services) import notifications only
// through this package. Notifications publishes no events.
package notificationsapi

import "time"

// Notification kinds: one e-mail per (order, kind), at most, ever.
const (
	// KindOrderReceived is sent for order.placed.
	KindOrderReceived = "order_received"
	// KindReceipt is sent for order.paid.
	KindReceipt = "receipt"
	// KindPaymentFailed is sent for order.payment_failed.
	KindPaymentFailed = "payment_failed"
	// KindCancelled is sent for order.cancelled.
	KindCancelled = "cancelled"
)

// Kinds lists every kind, in the order an order's life produces them.
func Kinds() []string {
	return []string{KindOrderReceived, KindReceipt, KindPaymentFailed, KindCancelled}
}

// Notification statuses.
const (
	// StatusQueued: recorded, its e-mail job waits in the queue (or is
	// being retried).
	StatusQueued = "queued"
	// StatusSent: the SMTP server accepted the e-mail at SentAt.
	StatusSent = "sent"
	// StatusFailed: the worker gave up (a permanent rejection, or every
	// allowed attempt failed); the job is in the dead-letter queue, and a
	// redrive sends it once it can.
	StatusFailed = "failed"
)

// Notification is one e-mail notifications decided to send, as
// GET /v1/notifications?order_id= returns it.
type Notification struct {
	ID      string `json:"id"`
	OrderID string `json:"order_id"`
	Kind    string `json:"kind"`
	// Recipient is the customer's address, taken from the order event.
	Recipient string `json:"recipient"`
	Status    string `json:"status"`
	// Attempts counts SMTP deliveries tried (successful or not).
	Attempts int `json:"attempts"`
	// LastError is the last failure, when there was one.
	LastError string `json:"last_error,omitempty"`
	// MessageID is the e-mail's Message-ID header, stable across retries:
	// a receiver that gets the e-mail twice (the SMTP hop is at least
	// once) recognises the copy by it.
	MessageID string `json:"message_id"`
	// OrderVersion is the order's version in the event that caused it.
	OrderVersion int64      `json:"order_version"`
	CreatedAt    time.Time  `json:"created_at"`
	SentAt       *time.Time `json:"sent_at,omitempty"`
}

// NotificationList is the answer of GET /v1/notifications?order_id=: the
// order's notifications, oldest first (empty when none was recorded yet:
// the projection follows the ORDERS stream and may lag).
type NotificationList struct {
	OrderID       string         `json:"order_id"`
	Notifications []Notification `json:"notifications"`
}
