// Package catalogapi is catalog's public contract: the representations its
// HTTP API returns and the events it publishes on the CATALOG stream. Other
// services import catalog only through this package.
package catalogapi

import "time"

// Stream is the stream catalog publishes to; events are keyed by product id.
const Stream = "CATALOG"

// Event types, schema version 1.
const (
	EventProductCreated  = "product.created"
	EventProductUpdated  = "product.updated"
	EventProductArchived = "product.archived"
)

// ProductChanged is the payload of every product event: enough to
// invalidate caches and purge the CDN; readers fetch the rest.
type ProductChanged struct {
	ID       string `json:"id"`
	Version  int64  `json:"version"`
	Category string `json:"category"`
	Status   string `json:"status"`
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

// ProductBatch answers GET /v1/products:batch: Missing lists ids that do
// not exist (or are archived).
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
