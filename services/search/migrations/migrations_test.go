package migrations_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/pkg/audit"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/search/migrations"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// TestMigrationCarriesTheAuditSchema: the audit log belongs to pkg/audit;
// the migration must carry its schema unchanged.
func TestMigrationCarriesTheAuditSchema(t *testing.T) {
	t.Parallel()
	testinfra.CarriesSchemas(t, migrations.FS, "00011_audit_log.sql", map[string]string{"audit.Schema": audit.Schema})
}

// TestMigrationIndexesText: pg_trgm is there, the generated tsvector stems
// with the row's configuration and weights name above description.
func TestMigrationIndexesText(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations.FS)
	if _, err := db.Pool.Exec(ctx, `
		INSERT INTO product_texts (product_id, locale, config, name, description, category, sku, version) VALUES
			('p1', 'de-DE', 'german', 'Eichentisch', 'Tische aus Eiche für die Küche', 'tables', 'TAB-1', 1),
			('p1', 'en-US', 'english', 'Oak table', 'Tables of solid oak', 'tables', 'TAB-1', 1)`); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		locale, config, q string
		want              bool
	}{
		{"de-DE", "german", "Tisch", true},      // "Tische" stems to "tisch"
		{"en-US", "english", "tabled", true},    // "Tables" and "tabled" stem to "tabl"
		{"en-US", "english", "TAB-1", true},     // the sku, weight A
		{"en-US", "english", "Küche", false},    // German words are not in the English text
		{"de-DE", "german", "oak table", false}, // nor English ones in the German
	}
	for _, tt := range tests {
		var found bool
		if err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM product_texts WHERE locale = $1 AND tsv @@ websearch_to_tsquery($2::regconfig, $3))`,
			tt.locale, tt.config, tt.q).Scan(&found); err != nil {
			t.Fatal(err)
		}
		if found != tt.want {
			t.Errorf("%s %q found = %t, want %t", tt.locale, tt.q, found, tt.want)
		}
	}
	var nameWeight, descWeight string
	if err := db.Pool.QueryRow(ctx, `SELECT ts_filter(tsv, '{a}')::text, ts_filter(tsv, '{c}')::text FROM product_texts WHERE locale = 'en-US'`).
		Scan(&nameWeight, &descWeight); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(nameWeight, "'oak':") || strings.Contains(descWeight, "'oak':1A") || !strings.Contains(descWeight, "'solid'") {
		t.Errorf("weights: A = %s, C = %s", nameWeight, descWeight)
	}
	var sim float64
	if err := db.Pool.QueryRow(ctx, `SELECT word_similarity('tabel', 'Oak table')`).Scan(&sim); err != nil || sim <= 0 {
		t.Fatalf("pg_trgm word_similarity = %v, %v", sim, err)
	}
}

// TestIndexNamesFollowTheTable: a rebuild copies a live table with LIKE
// (PostgreSQL then names the copy's indexes <copy>_<columns>_idx) and a
// swap renames them by the table-name prefix. That only gives the live
// names back if the migration named every index the way PostgreSQL
// would; this test fails for an index named by hand.
func TestIndexNamesFollowTheTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations.FS)
	indexes := func(table string) []string {
		t.Helper()
		rows, err := db.Pool.Query(ctx, `SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1`, table)
		if err != nil {
			t.Fatal(err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range names {
			rest, ok := strings.CutPrefix(n, table+"_")
			if !ok {
				t.Errorf("index %s of %s does not start with the table's name", n, table)
			}
			names[i] = rest
		}
		slices.Sort(names)
		return names
	}
	for _, table := range []string{"products", "product_texts", "catalog_positions", "orders", "orders_positions"} {
		copyName := table + "_rtest"
		if _, err := db.Pool.Exec(ctx, "CREATE TABLE "+copyName+" (LIKE "+table+" INCLUDING ALL)"); err != nil {
			t.Fatal(err)
		}
		if live, copied := indexes(table), indexes(copyName); !slices.Equal(live, copied) {
			t.Errorf("%s: index names %v, a LIKE copy gets %v", table, live, copied)
		}
	}
}
