// Package index is search's domain: the documents of the product and order
// indexes, how an event becomes a document, which text search
// configuration a locale uses, and the rules for search queries and page
// tokens. No I/O.
//
// The indexes are projections: derived from the CATALOG and ORDERS
// streams, they may lag behind the source (by the consumer's lag, which the
// API reports with every answer), they converge (after the streams drain,
// they equal a rebuild from the streams), and a document never moves
// backward (a document holds the entity version it was built from; an event
// with an older or equal version changes nothing).
package index

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

// Kind says which index a projection feeds.
type Kind int

const (
	// Products is the product index, fed by CATALOG.
	Products Kind = iota + 1
	// Orders is the order index, fed by ORDERS.
	Orders
)

// String names the index: "products" or "orders".
func (k Kind) String() string {
	switch k {
	case Products:
		return "products"
	case Orders:
		return "orders"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Outcome is what applying one event did to a projection.
type Outcome string

const (
	// Applied: the event's version was newer; the document changed.
	Applied Outcome = "applied"
	// Stale: the document already holds this version or a newer one (a
	// duplicate, a redelivery, a replay or an overtaken event): nothing
	// changed.
	Stale Outcome = "stale"
	// Ignored: the event type does not feed the index (e.g.
	// order.refund_required, or a type newer than this code).
	Ignored Outcome = "ignored"
)

// ErrIgnored is returned by the decoders for event types that do not feed
// the index: the event is acknowledged without a change.
var ErrIgnored = errors.New("event type does not feed the index")

// ErrPoison wraps every reason an event cannot be indexed however often it
// is retried (missing id, a subject that disagrees with the payload): the
// consumer dead-letters it.
var ErrPoison = errors.New("event cannot be indexed")

// Source says where a document's current version came from.
type Source struct {
	// Stream, Partition and Sequence locate the event in the log.
	Stream    string
	Partition int
	Sequence  uint64
	// EventID is the event's id (for tracing a document to its event).
	EventID string
	// EventTime is when the change happened (the producer's clock).
	EventTime time.Time
	// Published is when the broker stored the event: freshness is
	// measured against it.
	Published time.Time
}

// Text is a product's text in one locale, and the PostgreSQL text search
// configuration its words are stemmed with.
type Text struct {
	Locale      string
	Config      string
	Name        string
	Description string
}

// Product is a product document: the product's state at Version.
type Product struct {
	ID       string
	Version  int64
	Status   string
	Category string
	SKU      string
	Prices   map[string]int64
	Images   []string
	// Texts, one per locale, sorted by locale. Empty when HasText is
	// false.
	Texts []Text
	// HasText is false for events published before catalog carried the
	// product's text (schema version 1 without translations): the
	// document records version and status but cannot be found by words.
	HasText bool
}

// Catalog's product statuses; only active products are found.
const (
	StatusActive   = "active"
	StatusDraft    = "draft"
	StatusArchived = "archived"
)

// The schemas this build reads (events.Readable: an unknown schemaversion
// of a type the index handles is poison).
var (
	productSchemas = catalogapi.Schemas()
	orderSchemas   = ordersapi.Schemas()
)

// ProductFromEvent builds the product document an event of the CATALOG
// stream describes. It returns ErrIgnored for other event types and an
// error wrapping ErrPoison for an event that can never be indexed.
func ProductFromEvent(ev events.Envelope) (Product, error) {
	if err := events.Readable(ev, productSchemas); err != nil {
		return Product{}, fmt.Errorf("%w: %w", ErrPoison, err)
	}
	switch ev.Type {
	case catalogapi.EventProductCreated, catalogapi.EventProductUpdated, catalogapi.EventProductArchived:
	default:
		return Product{}, ErrIgnored
	}
	var pc catalogapi.ProductChanged
	if err := ev.DecodeData(&pc); err != nil {
		return Product{}, fmt.Errorf("%w: %w", ErrPoison, err)
	}
	switch {
	case pc.ID == "" || pc.ID != ev.Subject:
		return Product{}, fmt.Errorf("%w: %s %s: payload id %q differs from subject %q", ErrPoison, ev.Type, ev.ID, pc.ID, ev.Subject)
	case pc.Status == "":
		return Product{}, fmt.Errorf("%w: %s %s: no status", ErrPoison, ev.Type, ev.ID)
	}
	p := Product{
		ID: pc.ID, Version: ev.AggregateVersion, Status: pc.Status, Category: pc.Category, SKU: pc.SKU,
		Prices: maps.Clone(pc.Prices), Images: slices.Clone(pc.Images), HasText: len(pc.Translations) > 0,
	}
	if p.Prices == nil {
		p.Prices = map[string]int64{}
	}
	if p.Images == nil {
		p.Images = []string{}
	}
	for _, loc := range slices.Sorted(maps.Keys(pc.Translations)) {
		t := pc.Translations[loc]
		p.Texts = append(p.Texts, Text{Locale: loc, Config: TextConfig(loc), Name: strings.TrimSpace(t.Name), Description: t.Description})
	}
	return p, nil
}

// Order is an order document: the order's state at Version.
type Order struct {
	ID            string
	Version       int64
	CustomerID    string
	CustomerEmail string
	Status        string
	Currency      string
	TotalMinor    int64
	// Items are known from order.placed only; nil when that event has not
	// been applied (a status event overtook it), and then kept as they
	// are by later status events.
	Items []ordersapi.Line
	// At is when the change happened (the event's time).
	At time.Time
}

// OrderFromEvent builds the order document an event of the ORDERS stream
// describes. It returns ErrIgnored for types that do not change what the
// index shows (order.refund_required keeps the order's version) and an
// error wrapping ErrPoison for an event that can never be indexed.
func OrderFromEvent(ev events.Envelope) (Order, error) {
	if err := events.Readable(ev, orderSchemas); err != nil {
		return Order{}, fmt.Errorf("%w: %w", ErrPoison, err)
	}
	o := Order{ID: ev.Subject, Version: ev.AggregateVersion, At: ev.Time}
	switch ev.Type {
	case ordersapi.EventOrderPlaced:
		var op ordersapi.OrderPlaced
		if err := ev.DecodeData(&op); err != nil {
			return Order{}, fmt.Errorf("%w: %w", ErrPoison, err)
		}
		if op.OrderID != ev.Subject {
			return Order{}, fmt.Errorf("%w: %s %s: payload order_id %q differs from subject %q", ErrPoison, ev.Type, ev.ID, op.OrderID, ev.Subject)
		}
		o.CustomerID, o.CustomerEmail, o.Currency, o.TotalMinor = op.CustomerID, op.CustomerEmail, op.Currency, op.TotalMinor
		o.Status, o.Items = ordersapi.StatusPendingPayment, slices.Clone(op.Items)
		if o.Items == nil {
			o.Items = []ordersapi.Line{}
		}
	case ordersapi.EventOrderPaid, ordersapi.EventOrderPaymentFailed, ordersapi.EventOrderCancelled:
		var sc ordersapi.OrderStatusChanged
		if err := ev.DecodeData(&sc); err != nil {
			return Order{}, fmt.Errorf("%w: %w", ErrPoison, err)
		}
		if sc.OrderID != ev.Subject {
			return Order{}, fmt.Errorf("%w: %s %s: payload order_id %q differs from subject %q", ErrPoison, ev.Type, ev.ID, sc.OrderID, ev.Subject)
		}
		if !slices.Contains(OrderStatuses, sc.Status) {
			return Order{}, fmt.Errorf("%w: %s %s: unknown status %q", ErrPoison, ev.Type, ev.ID, sc.Status)
		}
		o.CustomerID, o.CustomerEmail, o.Currency, o.TotalMinor, o.Status = sc.CustomerID, sc.CustomerEmail, sc.Currency, sc.TotalMinor, sc.Status
	default:
		return Order{}, ErrIgnored
	}
	return o, nil
}

// ItemText is the searchable text of an order's items: names, skus and
// product ids.
func (o Order) ItemText() string {
	parts := make([]string, 0, 3*len(o.Items))
	for _, it := range o.Items {
		parts = append(parts, it.Name, it.SKU, it.ProductID)
	}
	return strings.Join(parts, " ")
}

// OrderStatuses are the statuses an order can have (ordersapi).
var OrderStatuses = []string{ordersapi.StatusPendingPayment, ordersapi.StatusPaid, ordersapi.StatusPaymentFailed, ordersapi.StatusCancelled}

// Locales are the locales a product search may ask for (catalog's
// locales). Documents in other locales are indexed too (with the 'simple'
// configuration) but cannot be asked for until they are added here.
var Locales = []string{"en-US", "de-DE", "fr-FR"}

// DefaultLocale is the locale of a search that names none.
const DefaultLocale = "en-US"

// TextConfig is the PostgreSQL text search configuration for a locale's
// words: 'english' for English, 'german' for German (stemming and stop
// words of the language), 'simple' (lower-casing only) for every other
// language, whose words are then found only in the form they are written.
func TextConfig(locale string) string {
	lang, _, _ := strings.Cut(strings.ToLower(locale), "-")
	switch lang {
	case "en":
		return "english"
	case "de":
		return "german"
	}
	return "simple"
}
