// Package notification holds notifications' domain rules, without I/O:
// which ORDERS event becomes which kind of e-mail, what a valid
// notification is, the e-mail's stable Message-ID, and how amounts are
// written for people.
//
// A notification is created once per (order, kind) and moves
//
//	queued ──SMTP server accepted──▶ sent
//	queued ──rejected for good / every attempt failed──▶ failed ──redrive, accepted──▶ sent
//
// The row is both the projection and the ledger of e-mails decided: it is
// never deleted to "rebuild" anything, because it is what stops a replay
// from sending again.
package notification

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

// ErrNotFound: no notification with that id.
var ErrNotFound = errors.New("notification not found")

// MessageIDDomain is the right-hand side of every Message-ID notifications
// writes. It is fixed (not the sender's domain) so that a configuration
// change never changes the Message-ID of an e-mail already on its way.
const MessageIDDomain = "notifications.shopfloor"

// MessageID is the Message-ID header (RFC 5322, with angle brackets) of
// the notification with id: derived from the id alone, so every attempt
// to send it, including a resend after a crash, carries the same one.
func MessageID(id string) string { return "<" + id + "@" + MessageIDDomain + ">" }

// KindFor maps an ORDERS event type to the kind of e-mail it causes; ok is
// false for event types that send nothing (order.refund_required, types
// added later).
func KindFor(eventType string) (kind string, ok bool) {
	switch eventType {
	case ordersapi.EventOrderPlaced:
		return notificationsapi.KindOrderReceived, true
	case ordersapi.EventOrderPaid:
		return notificationsapi.KindReceipt, true
	case ordersapi.EventOrderPaymentFailed:
		return notificationsapi.KindPaymentFailed, true
	case ordersapi.EventOrderCancelled:
		return notificationsapi.KindCancelled, true
	}
	return "", false
}

// Line is an order line as the "order received" e-mail lists it.
type Line struct {
	SKU            string `json:"sku"`
	Name           string `json:"name"`
	Quantity       int    `json:"quantity"`
	UnitPriceMinor int64  `json:"unit_price_minor"`
}

// Notification is one e-mail decided for an order. Everything the e-mail
// says is stored with it, so that every attempt renders the same message.
type Notification struct {
	ID      string
	OrderID string
	// CustomerID is the order's customer (the token subject of the
	// customer who placed it), from the order event. Empty when the event
	// carried none or the row predates it: then only operators see it.
	CustomerID string
	Kind       string
	Recipient  string
	Status     string
	Attempts   int
	LastError  string
	// EventID is the ORDERS event that caused it (for tracing a
	// notification back to its event).
	EventID      string
	OrderVersion int64
	Currency     string
	TotalMinor   int64
	// Reason says why a payment failed or who cancelled (may be empty).
	Reason    string
	Items     []Line
	CreatedAt time.Time
	UpdatedAt time.Time
	SentAt    *time.Time
}

// MessageID is n's Message-ID header.
func (n Notification) MessageID() string { return MessageID(n.ID) }

// API renders n for the API.
func (n Notification) API() notificationsapi.Notification {
	return notificationsapi.Notification{ID: n.ID, OrderID: n.OrderID, Kind: n.Kind, Recipient: n.Recipient, Status: n.Status,
		Attempts: n.Attempts, LastError: n.LastError, MessageID: n.MessageID(), OrderVersion: n.OrderVersion,
		CreatedAt: n.CreatedAt, SentAt: n.SentAt}
}

// FieldError is one invalid field of an order event, for a notification.
type FieldError struct{ Field, Message string }

// ValidationError lists what makes an event unusable for a notification.
// It is poison: a retry cannot fix it.
type ValidationError struct{ Fields []FieldError }

// Error lists the fields and what is wrong with each.
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid notification: " + strings.Join(parts, "; ")
}

// MaxRecipientLen is the longest address accepted (RFC 5321's path limit
// less the angle brackets).
const MaxRecipientLen = 254

// Validate checks what a notification needs from its event: an order id
// (a lower-case UUID), a known kind, a recipient that is one bare e-mail
// address, a currency code and a non-negative total.
func Validate(n Notification) error {
	var fe []FieldError
	if u, err := uuid.Parse(n.OrderID); err != nil || u.String() != n.OrderID {
		fe = append(fe, FieldError{"order_id", "must be an order id (a lower-case UUID)"})
	}
	known := false
	for _, k := range notificationsapi.Kinds() {
		known = known || k == n.Kind
	}
	if !known {
		fe = append(fe, FieldError{"kind", "must be one of " + strings.Join(notificationsapi.Kinds(), ", ")})
	}
	if msg := recipientProblem(n.Recipient); msg != "" {
		fe = append(fe, FieldError{"customer_email", msg})
	}
	if len(n.Currency) != 3 || strings.ToUpper(n.Currency) != n.Currency {
		fe = append(fe, FieldError{"currency", "must be a three-letter ISO 4217 code"})
	}
	if n.TotalMinor < 0 {
		fe = append(fe, FieldError{"total_minor", "must not be negative"})
	}
	if len(fe) > 0 {
		return &ValidationError{Fields: fe}
	}
	return nil
}

func recipientProblem(s string) string {
	switch {
	case s == "":
		return "is required (the order event carries the customer's address)"
	case len(s) > MaxRecipientLen:
		return fmt.Sprintf("is longer than %d characters", MaxRecipientLen)
	case strings.ContainsAny(s, "\r\n"):
		return "must be one line"
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return "must be one bare e-mail address, such as ada@example.com"
	}
	return ""
}

// zeroDecimal are ISO 4217 currencies without minor units.
var zeroDecimal = map[string]bool{"JPY": true, "KRW": true, "ISK": true, "CLP": true, "VND": true}

// FormatAmount writes an amount in minor units for a person: "42.00 EUR",
// "1500 JPY".
func FormatAmount(minor int64, currency string) string {
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	if zeroDecimal[currency] {
		return fmt.Sprintf("%s%d %s", sign, minor, currency)
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, minor/100, minor%100, currency)
}
