// Package catalogapi is catalog's public contract: the representations its
// HTTP API returns, the events it publishes on the CATALOG stream, and
// Client, the HTTP client other services call catalog with. Other services
// import catalog only through this package.
//
// Client guarantees bounded waiting, not an answer: every attempt has a
// timeout, only transient failures (connection errors, timeouts, 502, 503,
// 504, 429) are retried, with full-jitter backoff and never past the
// caller's deadline, and a circuit breaker that transport failures,
// timeouts and 5xx answers open makes calls fail at once while catalog is
// down. A 4xx answer is the caller's mistake: it is returned as a
// *ProblemError, not retried, and not held against catalog. Everything
// else that keeps catalog from answering is ErrUnavailable; the caller
// answers 503 with Retry-After: RetryAfter(err).
package catalogapi

import (
	"time"

	"github.com/shopfloor/shopfloor/pkg/events"
)

// Stream is the stream catalog publishes to; events are keyed by product id.
const Stream = "CATALOG"

// Audience is catalog's name at the identity provider (its AUTH_AUDIENCE
// default): a service calling catalog's service routes asks for a
// client-credentials token for this audience.
const Audience = "catalog"

// SchemaVersion is the schemaversion of every event type catalog
// publishes now (see ordersapi.SchemaVersion).
const SchemaVersion = 1

// Event types, schema version 1.
const (
	EventProductCreated  = "product.created"
	EventProductUpdated  = "product.updated"
	EventProductArchived = "product.archived"
)

// ProductChanged is the payload of every product event. It carries the
// product's whole state after the change (event-carried state transfer), so
// that a projection (search) can be rebuilt from the stream alone, without
// calling catalog back: id, version, category and status are enough to
// invalidate caches and purge the CDN; sku, translations, prices and images
// complete the product.
//
// The state fields were added to schema version 1 as optional fields (a
// compatible change, checked by the golden test): events published before
// them lack them, and readers must treat a missing translations map as
// "text unknown", not as "no text".
type ProductChanged struct {
	ID       string `json:"id"`
	Version  int64  `json:"version"`
	Category string `json:"category"`
	Status   string `json:"status"`
	// SKU is the product's stock-keeping unit.
	SKU string `json:"sku,omitempty"`
	// Translations maps a locale (e.g. "en-US") to the product's text in
	// it; the default locale is always present.
	Translations map[string]ProductText `json:"translations,omitempty"`
	// Prices maps a currency (e.g. "EUR") to the price in minor units.
	Prices map[string]int64 `json:"prices,omitempty"`
	// Images are https URLs, in display order.
	Images []string `json:"images,omitempty"`
}

// Schemas declares the events catalog publishes, for events.CheckGolden
// and events.Readable (every consumer of CATALOG refuses a schemaversion
// it does not know):
// each example has every field filled in, so that the golden files guard
// all of them against breaking changes.
func Schemas() []events.Schema {
	example := ProductChanged{
		ID: "0190a3c1-5e2f-7b3d-9f01-6c2a8e4d1b70", Version: 3, Category: "lamps", Status: "active",
		SKU: "LAMP-OAK-01",
		Translations: map[string]ProductText{
			"en-US": {Name: "Oak lamp", Description: "A lamp of solid oak."},
			"de-DE": {Name: "Eichenlampe", Description: "Eine Lampe aus massiver Eiche."},
		},
		Prices: map[string]int64{"EUR": 4900, "USD": 5300},
		Images: []string{"https://img.shopfloor.dev/lamps/oak-1.jpg"},
	}
	return []events.Schema{
		{Type: EventProductCreated, Version: SchemaVersion, Example: example},
		{Type: EventProductUpdated, Version: SchemaVersion, Example: example},
		{Type: EventProductArchived, Version: SchemaVersion, Example: example},
	}
}

// Product is a product rendered for one locale and currency.
type Product struct {
	ID          string   `json:"id"`
	SKU         string   `json:"sku"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Category    string   `json:"category"`
	Images      []string `json:"images"`
	Status      string   `json:"status"`
	Version     int64    `json:"version"`
	Locale      string   `json:"locale"`
	Price       Price    `json:"price"`
}

// Price is an amount in minor units (cents) of a currency.
type Price struct {
	Currency    string `json:"currency"`
	AmountMinor int64  `json:"amount_minor"`
}

// ProductList is a page of products; NextPageToken is empty on the last.
type ProductList struct {
	Products      []Product `json:"products"`
	NextPageToken string    `json:"next_page_token,omitempty"`
}

// ProductBatch answers GET /v1/products:batch?ids=…&skus=…: Products are
// in the order asked, those named by id first, then those named by sku;
// Missing lists, in the same order, the ids and skus that do not exist,
// are not public (draft or archived), or have no price in the requested
// currency.
type ProductBatch struct {
	Products []Product `json:"products"`
	Missing  []string  `json:"missing,omitempty"`
}

// AdminProduct is the full product as the admin API reads and writes it.
type AdminProduct struct {
	ID           string                 `json:"id,omitempty"`
	SKU          string                 `json:"sku"`
	Category     string                 `json:"category"`
	Images       []string               `json:"images"`
	Status       string                 `json:"status,omitempty"`
	Version      int64                  `json:"version,omitempty"`
	Translations map[string]ProductText `json:"translations"`
	Prices       map[string]int64       `json:"prices"`
	UpdatedAt    time.Time              `json:"updated_at,omitzero"`
}

// ProductText is a product's text in one locale.
type ProductText struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}
