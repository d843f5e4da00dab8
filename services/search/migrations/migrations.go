// Package migrations embeds search's SQL migrations (goose), applied by the
// migrate command and by the tests' template database.
//
// The live tables have fixed names (products, product_texts,
// catalog_positions, orders, orders_positions); a rebuild creates copies
// with CREATE TABLE ... (LIKE ... INCLUDING ALL) and renames them into
// place, so a migration that changes a live table changes what the next
// rebuild creates. Indexes carry the names PostgreSQL would choose
// (<table>_<columns>_idx), because a swap renames them by that prefix.
package migrations

import "embed"

// FS holds the numbered migration files.
//
//go:embed *.sql
var FS embed.FS
