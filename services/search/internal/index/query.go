package index

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of a search request.
const (
	// MaxQueryRunes bounds q: longer queries are refused, not truncated.
	MaxQueryRunes = 200
	// DefaultLimit is the page size when limit is not given.
	DefaultLimit = 20
	// MaxLimit is the largest page size.
	MaxLimit = 100
	// maxCustomerID bounds customer_id.
	maxCustomerID = 128
)

// Match modes of a product search.
const (
	// MatchFullText: full-text search (websearch_to_tsquery on the
	// locale's configuration) found the products.
	MatchFullText = "fulltext"
	// MatchFuzzy: full-text search found nothing, so products are matched
	// by trigram similarity of their names (typo tolerance).
	MatchFuzzy = "fuzzy"
)

// FieldError names one invalid query parameter.
type FieldError struct {
	Field   string
	Message string
}

// InvalidQueryError lists every invalid parameter of a search request.
type InvalidQueryError struct {
	Fields []FieldError
}

// Error lists the bad parameters: "invalid search: q: ...; limit: ...".
func (e *InvalidQueryError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid search: " + strings.Join(parts, "; ")
}

// ProductQuery is a validated product search.
type ProductQuery struct {
	// Q is the user's words (trimmed), in websearch syntax: "quoted
	// phrases", -exclusions, OR.
	Q string
	// Category, if set, restricts to one category.
	Category string
	// Locale picks the texts searched and returned.
	Locale string
	// After is the position of the previous page's last hit; nil on the
	// first page.
	After *Cursor
	// Limit is the page size.
	Limit int
}

// OrderQuery is a validated order search. Every filter is optional; an
// empty query lists orders newest first.
type OrderQuery struct {
	CustomerID string
	Status     string
	// Q, if set, are words found in the order id, item names and skus, or
	// the customer's email.
	Q     string
	After *Cursor
	Limit int
}

// Cursor is a position in a result list: the sort key (score, id) of the
// last hit returned, and which query it belongs to.
type Cursor struct {
	// Mode is the product search's match mode (MatchFullText or
	// MatchFuzzy); empty for orders.
	Mode  string  `json:"m,omitempty"`
	Score float64 `json:"s"`
	ID    string  `json:"id"`
	// Query is a fingerprint of the query's filters: a token is only
	// valid for the query that produced it.
	Query string `json:"q"`
}

var categoryPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)

// ParseProductQuery validates the parameters of GET /v1/search/products
// (q, category, locale, page_token, limit) and reports every bad one.
func ParseProductQuery(v url.Values) (ProductQuery, error) {
	var fe []FieldError
	q := ProductQuery{Q: strings.TrimSpace(v.Get("q")), Category: v.Get("category"), Locale: v.Get("locale"), Limit: DefaultLimit}
	if msg := queryProblem(q.Q, "is required: the words to search for"); msg != "" {
		fe = append(fe, FieldError{"q", msg})
	}
	if q.Category != "" && !categoryPattern.MatchString(q.Category) {
		fe = append(fe, FieldError{"category", "must be 1–40 lower-case letters, digits or '-'"})
	}
	if q.Locale == "" {
		q.Locale = DefaultLocale
	} else if !slices.Contains(Locales, q.Locale) {
		fe = append(fe, FieldError{"locale", fmt.Sprintf("unknown locale %q (supported: %s)", q.Locale, strings.Join(Locales, ", "))})
	}
	q.Limit, fe = parseLimit(v, q.Limit, fe)
	q.After, fe = parseToken(v, q.Fingerprint(), fe)
	if q.After != nil && q.After.Mode != MatchFullText && q.After.Mode != MatchFuzzy {
		fe = append(fe, FieldError{"page_token", "is not a token this API returned"})
	}
	if len(fe) > 0 {
		return ProductQuery{}, &InvalidQueryError{Fields: fe}
	}
	return q, nil
}

// Fingerprint identifies the query a page token belongs to.
func (q ProductQuery) Fingerprint() string { return fingerprint("products", q.Q, q.Category, q.Locale) }

// ParseOrderQuery validates the parameters of GET /v1/search/orders
// (customer_id, status, q, page_token, limit) and reports every bad one.
func ParseOrderQuery(v url.Values) (OrderQuery, error) {
	var fe []FieldError
	q := OrderQuery{CustomerID: v.Get("customer_id"), Status: v.Get("status"), Q: strings.TrimSpace(v.Get("q")), Limit: DefaultLimit}
	if v.Has("q") {
		if msg := queryProblem(q.Q, "must not be empty (leave q out to list orders without words)"); msg != "" {
			fe = append(fe, FieldError{"q", msg})
		}
	}
	if v.Has("customer_id") && (q.CustomerID == "" || len(q.CustomerID) > maxCustomerID || !utf8.ValidString(q.CustomerID)) {
		fe = append(fe, FieldError{"customer_id", fmt.Sprintf("must be 1–%d characters", maxCustomerID)})
	}
	if v.Has("status") && !slices.Contains(OrderStatuses, q.Status) {
		fe = append(fe, FieldError{"status", fmt.Sprintf("unknown status %q (known: %s)", q.Status, strings.Join(OrderStatuses, ", "))})
	}
	q.Limit, fe = parseLimit(v, q.Limit, fe)
	q.After, fe = parseToken(v, q.Fingerprint(), fe)
	if q.After != nil && q.After.Mode != "" {
		fe = append(fe, FieldError{"page_token", "is not a token this API returned"})
	}
	if len(fe) > 0 {
		return OrderQuery{}, &InvalidQueryError{Fields: fe}
	}
	return q, nil
}

// Fingerprint identifies the query a page token belongs to.
func (q OrderQuery) Fingerprint() string { return fingerprint("orders", q.CustomerID, q.Status, q.Q) }

// queryProblem says what is wrong with q, or ""; empty is the message
// for an empty q.
func queryProblem(q, empty string) string {
	switch n := utf8.RuneCountInString(q); {
	case !utf8.ValidString(q):
		return "must be valid UTF-8"
	case n == 0:
		return empty
	case n > MaxQueryRunes:
		return fmt.Sprintf("must be at most %d characters (got %d)", MaxQueryRunes, n)
	}
	return ""
}

func parseLimit(v url.Values, def int, fe []FieldError) (int, []FieldError) {
	s := v.Get("limit")
	if s == "" && !v.Has("limit") {
		return def, fe
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxLimit {
		return def, append(fe, FieldError{"limit", fmt.Sprintf("must be a whole number 1..%d", MaxLimit)})
	}
	return n, fe
}

func parseToken(v url.Values, fp string, fe []FieldError) (*Cursor, []FieldError) {
	if !v.Has("page_token") {
		return nil, fe
	}
	c, err := DecodeCursor(v.Get("page_token"))
	switch {
	case err != nil:
		return nil, append(fe, FieldError{"page_token", "is not a token this API returned"})
	case c.Query != fp:
		return nil, append(fe, FieldError{"page_token", "belongs to another search; send the same q and filters as the first page"})
	}
	return &c, fe
}

// fingerprint hashes the parts of a query that a page token is bound to.
func fingerprint(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// errBadCursor is returned by DecodeCursor for anything it did not encode.
var errBadCursor = errors.New("malformed page token")

// Encode returns the cursor as an opaque page token.
func (c Cursor) Encode() string {
	b, err := json.Marshal(c)
	if err != nil {
		// A struct of strings and a float that is never NaN or Inf
		// (scores come from PostgreSQL ranks): cannot fail.
		panic(fmt.Sprintf("index: encode cursor: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor reads a page token made by Encode.
func DecodeCursor(token string) (Cursor, error) {
	if token == "" || len(token) > 512 {
		return Cursor{}, errBadCursor
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return Cursor{}, errBadCursor
	}
	var c Cursor
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || c.ID == "" || c.Query == "" {
		return Cursor{}, errBadCursor
	}
	return c, nil
}
