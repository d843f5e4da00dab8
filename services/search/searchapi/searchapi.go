// Package searchapi is search's public contract: the answers of its HTTP
// API. Other services and clients import search only through this package.
//
// Every answer comes from a projection of a stream, so it is derived and
// may lag behind the source: each answer says how fresh it is, in the body
// (Freshness) and in headers (HeaderLastApplied, HeaderLagSeconds), so a
// client can tell "not found" from "not indexed yet".
package searchapi

import "time"

// Freshness headers, set on every search answer.
const (
	// HeaderLastApplied is when the projection last finished an event of
	// its stream (RFC 3339, UTC). Absent while it has finished none.
	HeaderLastApplied = "X-Projection-Last-Applied"
	// HeaderLagSeconds is the age in seconds of the oldest event of the
	// stream the projection has not applied yet (0 when it is caught up),
	// as last sampled from the broker. Absent when unknown (the broker
	// could not be asked recently).
	HeaderLagSeconds = "X-Projection-Lag-Seconds"
)

// Freshness says how current a projection was when it answered.
type Freshness struct {
	// Stream the projection is built from: CATALOG or ORDERS.
	Stream string `json:"stream"`
	// LastAppliedAt is when the projection last finished an event
	// (applied it, or found it stale); nil while it has finished none.
	LastAppliedAt *time.Time `json:"last_applied_at"`
	// LastEventAt is when the broker stored the newest event the
	// projection has finished.
	LastEventAt *time.Time `json:"last_event_at"`
	// LagSeconds is the age of the oldest event not applied yet, 0 when
	// caught up; nil when unknown.
	LagSeconds *float64 `json:"lag_seconds"`
	// LagMessages counts the events not applied yet; nil when unknown.
	LagMessages *uint64 `json:"lag_messages"`
	// LagSampledAt is when the lag was read from the broker.
	LagSampledAt *time.Time `json:"lag_sampled_at,omitempty"`
}

// ProductHit is one product found, in the locale asked for.
type ProductHit struct {
	ID          string           `json:"id"`
	SKU         string           `json:"sku"`
	Name        string           `json:"name"`
	Description string           `json:"description"`
	Category    string           `json:"category"`
	Locale      string           `json:"locale"`
	Status      string           `json:"status"`
	Version     int64            `json:"version"`
	Prices      map[string]int64 `json:"prices"`
	Images      []string         `json:"images"`
	// Score orders the hits (higher first); it is comparable within one
	// answer only.
	Score float64 `json:"score"`
}

// ProductResults answers GET /v1/search/products.
type ProductResults struct {
	Products []ProductHit `json:"products"`
	// Match is "fulltext", or "fuzzy" when full-text search found nothing
	// and names were matched by similarity (typo tolerance).
	Match string `json:"match"`
	// NextPageToken fetches the next page (same q and filters); empty on
	// the last page.
	NextPageToken string    `json:"next_page_token,omitempty"`
	Freshness     Freshness `json:"freshness"`
}

// OrderItem is an order line as the index knows it.
type OrderItem struct {
	ProductID      string `json:"product_id"`
	SKU            string `json:"sku"`
	Name           string `json:"name"`
	Quantity       int    `json:"quantity"`
	UnitPriceMinor int64  `json:"unit_price_minor"`
}

// OrderHit is one order found.
type OrderHit struct {
	ID            string `json:"id"`
	CustomerID    string `json:"customer_id"`
	CustomerEmail string `json:"customer_email"`
	Status        string `json:"status"`
	Version       int64  `json:"version"`
	Currency      string `json:"currency"`
	TotalMinor    int64  `json:"total_minor"`
	// Items is empty when the index has not seen the order's order.placed
	// event (a later status event overtook it).
	Items     []OrderItem `json:"items"`
	PlacedAt  time.Time   `json:"placed_at"`
	UpdatedAt time.Time   `json:"updated_at"`
	// Score orders the hits: text rank with q, newest first without.
	Score float64 `json:"score"`
}

// OrderResults answers GET /v1/search/orders.
type OrderResults struct {
	Orders        []OrderHit `json:"orders"`
	NextPageToken string     `json:"next_page_token,omitempty"`
	Freshness     Freshness  `json:"freshness"`
}
