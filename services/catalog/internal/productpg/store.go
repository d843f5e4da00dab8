// Package productpg is catalog's PostgreSQL store. SQL is visible in each
// method; driver errors become the domain's errors here.
package productpg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/services/catalog/internal/product"
)

// Querier is a pool or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

const columns = `id::text, sku, category, images, status, version, translations, prices`

func scan(row pgx.Row) (product.Product, error) {
	var p product.Product
	var images, translations, prices []byte
	if err := row.Scan(&p.ID, &p.SKU, &p.Category, &images, &p.Status, &p.Version, &translations, &prices); err != nil {
		return p, err
	}
	if err := json.Unmarshal(images, &p.Images); err != nil {
		return p, fmt.Errorf("images of %s: %w", p.ID, err)
	}
	if err := json.Unmarshal(translations, &p.Translations); err != nil {
		return p, fmt.Errorf("translations of %s: %w", p.ID, err)
	}
	if err := json.Unmarshal(prices, &p.Prices); err != nil {
		return p, fmt.Errorf("prices of %s: %w", p.ID, err)
	}
	return p, nil
}

// Get reads one product; forUpdate locks it for the rest of the
// transaction (q must then be a pgx.Tx).
func Get(ctx context.Context, q Querier, id string, forUpdate bool) (product.Product, error) {
	sql := `SELECT ` + columns + ` FROM products WHERE id = $1`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	p, err := scan(q.QueryRow(ctx, sql, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return p, product.ErrNotFound
	}
	if err != nil {
		return p, fmt.Errorf("get product %s: %w", id, err)
	}
	return p, nil
}

// GetMany reads the products with the given ids (missing ones are absent).
func GetMany(ctx context.Context, q Querier, ids []string) ([]product.Product, error) {
	rows, err := q.Query(ctx, `SELECT `+columns+` FROM products WHERE id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("get products: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (product.Product, error) { return scan(r) })
}

// IDsBySKU maps every sku in skus that names a product, whatever its
// status, to the product's id; unknown skus are absent from the map. One
// query for the whole batch, served by the unique index on products.sku
// (products_sku_key).
func IDsBySKU(ctx context.Context, q Querier, skus []string) (map[string]string, error) {
	rows, err := q.Query(ctx, `SELECT sku, id::text FROM products WHERE sku = ANY($1::text[])`, skus)
	if err != nil {
		return nil, fmt.Errorf("resolve skus: %w", err)
	}
	defer rows.Close()
	ids := make(map[string]string, len(skus))
	for rows.Next() {
		var sku, id string
		if err := rows.Scan(&sku, &id); err != nil {
			return nil, fmt.Errorf("resolve skus: %w", err)
		}
		ids[sku] = id
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("resolve skus: %w", err)
	}
	return ids, nil
}

// ListActive returns up to limit active products after the id afterID
// (empty: from the start), in id order, optionally of one category. The
// id order makes the cursor stable under inserts and updates.
func ListActive(ctx context.Context, q Querier, category, afterID string, limit int) ([]product.Product, error) {
	if afterID == "" {
		afterID = "00000000-0000-0000-0000-000000000000"
	}
	rows, err := q.Query(ctx, `
		SELECT `+columns+` FROM products
		WHERE status = 'active' AND ($1 = '' OR category = $1) AND id > $2::uuid
		ORDER BY id LIMIT $3`, category, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("list products: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (product.Product, error) { return scan(r) })
}

func encode(p product.Product) (images, translations, prices []byte, err error) {
	if p.Images == nil {
		p.Images = []string{}
	}
	if images, err = json.Marshal(p.Images); err != nil {
		return
	}
	if translations, err = json.Marshal(p.Translations); err != nil {
		return
	}
	prices, err = json.Marshal(p.Prices)
	return
}

// Insert writes a new product.
func Insert(ctx context.Context, tx pgx.Tx, p product.Product) error {
	images, translations, prices, err := encode(p)
	if err != nil {
		return fmt.Errorf("encode product: %w", err)
	}
	_, err = tx.Exec(ctx, `
		INSERT INTO products (id, sku, category, images, status, version, translations, prices)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		p.ID, p.SKU, p.Category, images, p.Status, p.Version, translations, prices)
	if pgdb.IsCode(err, pgdb.CodeUniqueViolation) && pgdb.ConstraintName(err) == "products_sku_key" {
		return product.ErrSKUTaken
	}
	if err != nil {
		return fmt.Errorf("insert product: %w", err)
	}
	return nil
}

// Update writes p over the row with p.ID (the caller bumped the version
// while holding the row lock).
func Update(ctx context.Context, tx pgx.Tx, p product.Product) error {
	images, translations, prices, err := encode(p)
	if err != nil {
		return fmt.Errorf("encode product: %w", err)
	}
	_, err = tx.Exec(ctx, `
		UPDATE products SET sku = $2, category = $3, images = $4, status = $5, version = $6,
			translations = $7, prices = $8, updated_at = now()
		WHERE id = $1`,
		p.ID, p.SKU, p.Category, images, p.Status, p.Version, translations, prices)
	if pgdb.IsCode(err, pgdb.CodeUniqueViolation) && pgdb.ConstraintName(err) == "products_sku_key" {
		return product.ErrSKUTaken
	}
	if err != nil {
		return fmt.Errorf("update product %s: %w", p.ID, err)
	}
	return nil
}

// CopyProducts bulk-inserts new products with COPY (the seed command).
func CopyProducts(ctx context.Context, tx pgx.Tx, ps []product.Product) error {
	rows := make([][]any, len(ps))
	for i, p := range ps {
		images, translations, prices, err := encode(p)
		if err != nil {
			return fmt.Errorf("encode product: %w", err)
		}
		rows[i] = []any{p.ID, p.SKU, p.Category, images, p.Status, p.Version, translations, prices}
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"products"},
		[]string{"id", "sku", "category", "images", "status", "version", "translations", "prices"}, pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("copy products: %w", err)
	}
	return nil
}
