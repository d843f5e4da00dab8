package indexpg

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/search/internal/index"
	"github.com/shopfloor/shopfloor/services/search/searchapi"
)

// FuzzyThreshold is the least word similarity (pg_trgm's word_similarity
// of the query to the best-matching run of words in a name) that a fuzzy
// product match needs. 0.5 lets one wrong, missing or extra letter in a
// word of four letters or more through ("lamq" finds "lamp", "walnt"
// finds "Walnut") and keeps unrelated names out.
const FuzzyThreshold = 0.5

// ProductPage is one page of product hits.
type ProductPage struct {
	Hits  []searchapi.ProductHit
	Match string
	// Next is the cursor of the following page; nil on the last page.
	Next *index.Cursor
}

// SearchProducts finds active products in q's locale.
//
// Ranking (full-text): an exact name match (case-insensitive) first, then
// documents whose name or sku (weight A) matches the query, then the rest
// (category B, description C), each tier ordered by ts_rank; ties by id.
// When full-text search finds nothing on the first page, names are matched
// by trigram similarity instead (Match = index.MatchFuzzy), best first; the
// page token remembers the mode, so later pages continue the same list.
func SearchProducts(ctx context.Context, db TxStarter, p Projection, q index.ProductQuery) (ProductPage, error) {
	var page ProductPage
	err := pgx.BeginTxFunc(ctx, db, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		mode := index.MatchFullText
		if q.After != nil {
			mode = q.After.Mode
		}
		var err error
		if mode == index.MatchFullText {
			page, err = searchProducts(ctx, tx, p, q, mode)
			if err != nil || len(page.Hits) > 0 || q.After != nil {
				return err
			}
			mode = index.MatchFuzzy
		}
		if _, err := tx.Exec(ctx, `SELECT set_config('pg_trgm.word_similarity_threshold', $1, true)`,
			strconv.FormatFloat(FuzzyThreshold, 'f', -1, 64)); err != nil {
			return fmt.Errorf("search products: %w", err)
		}
		page, err = searchProducts(ctx, tx, p, q, mode)
		return err
	})
	return page, err
}

func searchProducts(ctx context.Context, tx pgx.Tx, p Projection, q index.ProductQuery, mode string) (ProductPage, error) {
	args := []any{index.TextConfig(q.Locale), q.Q, q.Locale}
	var score, match string
	if mode == index.MatchFullText {
		score = `(CASE WHEN lower(t.name) = lower($2) THEN 2 ELSE 0 END
			+ CASE WHEN ts_filter(t.tsv, '{a}') @@ query THEN 1 ELSE 0 END
			+ ts_rank(t.tsv, query, 32))::float8`
		match = `t.tsv @@ query`
	} else {
		score = `word_similarity($2, t.name)::float8`
		match = `$2 <% t.name`
	}
	where := []string{"t.locale = $3", "d.status = 'active'", match}
	if q.Category != "" {
		args = append(args, q.Category)
		where = append(where, "t.category = $"+strconv.Itoa(len(args)))
	}
	outer := ""
	if q.After != nil {
		args = append(args, q.After.Score, q.After.ID)
		n := len(args)
		outer = fmt.Sprintf("WHERE s.score < $%d OR (s.score = $%d AND s.product_id > $%d)", n-1, n-1, n)
	}
	args = append(args, q.Limit+1)
	sql := p.sql(`
		SELECT s.product_id, s.locale, s.name, s.description, s.category, s.sku, s.status, s.version, s.prices, s.images, s.score
		FROM (
			SELECT d.product_id, t.locale, t.name, t.description, t.category, t.sku, d.status, d.version, d.prices, d.images,
				` + score + ` AS score
			FROM {docs} d JOIN {texts} t ON t.product_id = d.product_id, websearch_to_tsquery($1::regconfig, $2) AS query
			WHERE ` + strings.Join(where, " AND ") + `
		) s
		` + outer + `
		ORDER BY s.score DESC, s.product_id
		LIMIT $` + strconv.Itoa(len(args)))
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return ProductPage{}, fmt.Errorf("search products: %w", err)
	}
	var h searchapi.ProductHit
	var prices, images []byte
	page := ProductPage{Match: mode, Hits: []searchapi.ProductHit{}}
	_, err = pgx.ForEachRow(rows, []any{&h.ID, &h.Locale, &h.Name, &h.Description, &h.Category, &h.SKU, &h.Status, &h.Version, &prices, &images, &h.Score}, func() error {
		hit := h
		hit.Prices, hit.Images = map[string]int64{}, []string{}
		if err := json.Unmarshal(prices, &hit.Prices); err != nil {
			return fmt.Errorf("product %s prices: %w", h.ID, err)
		}
		if err := json.Unmarshal(images, &hit.Images); err != nil {
			return fmt.Errorf("product %s images: %w", h.ID, err)
		}
		page.Hits = append(page.Hits, hit)
		return nil
	})
	if err != nil {
		return ProductPage{}, fmt.Errorf("search products: %w", err)
	}
	if len(page.Hits) > q.Limit {
		page.Hits = page.Hits[:q.Limit]
		last := page.Hits[len(page.Hits)-1]
		page.Next = &index.Cursor{Mode: mode, Score: last.Score, ID: last.ID, Query: q.Fingerprint()}
	}
	return page, nil
}

// OrderPage is one page of order hits.
type OrderPage struct {
	Hits []searchapi.OrderHit
	Next *index.Cursor
}

// SearchOrders finds orders by customer, status and words. With q, hits
// are ordered by text rank (order id A, item names and skus B, customer
// email C); without, newest first. Ties by id.
func SearchOrders(ctx context.Context, db DB, p Projection, q index.OrderQuery) (OrderPage, error) {
	var args []any
	var where []string
	from := "{docs} o"
	score := "extract(epoch FROM o.placed_at)::float8"
	if q.Q != "" {
		args = append(args, q.Q)
		from += ", websearch_to_tsquery('simple', $1) AS query"
		score = "ts_rank(o.tsv, query, 32)::float8"
		where = append(where, "o.tsv @@ query")
	}
	if q.CustomerID != "" {
		args = append(args, q.CustomerID)
		where = append(where, "o.customer_id = $"+strconv.Itoa(len(args)))
	}
	if q.Status != "" {
		args = append(args, q.Status)
		where = append(where, "o.status = $"+strconv.Itoa(len(args)))
	}
	filter := ""
	if len(where) > 0 {
		filter = "WHERE " + strings.Join(where, " AND ")
	}
	outer := ""
	if q.After != nil {
		args = append(args, q.After.Score, q.After.ID)
		n := len(args)
		outer = fmt.Sprintf("WHERE s.score < $%d OR (s.score = $%d AND s.order_id > $%d)", n-1, n-1, n)
	}
	args = append(args, q.Limit+1)
	sql := p.sql(`
		SELECT s.order_id, s.customer_id, s.customer_email, s.status, s.version, s.currency, s.total_minor, s.items,
			s.placed_at, s.updated_at, s.score
		FROM (
			SELECT o.order_id, o.customer_id, o.customer_email, o.status, o.version, o.currency, o.total_minor, o.items,
				o.placed_at, o.updated_at, ` + score + ` AS score
			FROM ` + from + `
			` + filter + `
		) s
		` + outer + `
		ORDER BY s.score DESC, s.order_id
		LIMIT $` + strconv.Itoa(len(args)))
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return OrderPage{}, fmt.Errorf("search orders: %w", err)
	}
	var h searchapi.OrderHit
	var items []byte
	var placed, updated time.Time
	page := OrderPage{Hits: []searchapi.OrderHit{}}
	_, err = pgx.ForEachRow(rows, []any{&h.ID, &h.CustomerID, &h.CustomerEmail, &h.Status, &h.Version, &h.Currency, &h.TotalMinor, &items, &placed, &updated, &h.Score}, func() error {
		hit := h
		hit.PlacedAt, hit.UpdatedAt = placed.UTC(), updated.UTC()
		hit.Items = []searchapi.OrderItem{}
		if items != nil {
			var lines []ordersapi.Line
			if err := json.Unmarshal(items, &lines); err != nil {
				return fmt.Errorf("order %s items: %w", h.ID, err)
			}
			for _, l := range lines {
				hit.Items = append(hit.Items, searchapi.OrderItem{ProductID: l.ProductID, SKU: l.SKU, Name: l.Name, Quantity: l.Quantity, UnitPriceMinor: l.UnitPriceMinor})
			}
		}
		page.Hits = append(page.Hits, hit)
		return nil
	})
	if err != nil {
		return OrderPage{}, fmt.Errorf("search orders: %w", err)
	}
	if len(page.Hits) > q.Limit {
		page.Hits = page.Hits[:q.Limit]
		last := page.Hits[len(page.Hits)-1]
		page.Next = &index.Cursor{Score: last.Score, ID: last.ID, Query: q.Fingerprint()}
	}
	return page, nil
}
