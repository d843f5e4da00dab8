package indexpg_test

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/search/internal/index"
	"github.com/shopfloor/shopfloor/services/search/internal/indexpg"
	"github.com/shopfloor/shopfloor/services/search/migrations"
)

// doc is an active product of category whose en-US name and description
// are given, and whose de-DE name is "DE " + name.
func doc(id, category, name, description string) index.Product {
	return index.Product{ID: id, Version: 1, Status: index.StatusActive, Category: category, SKU: "SKU-" + id,
		Prices: map[string]int64{"EUR": 1999}, Images: []string{}, HasText: true,
		Texts: []index.Text{
			{Locale: "de-DE", Config: "german", Name: "DE " + name, Description: description},
			{Locale: "en-US", Config: "english", Name: name, Description: description},
		}}
}

// catalog indexes docs in the live product projection.
func catalog(t *testing.T, docs ...index.Product) *pgxpool.Pool {
	t.Helper()
	pool := testinfra.Postgres(t, migrations.FS).Pool
	for i, d := range docs {
		applyProduct(t, pool, indexpg.LiveProducts, d, src(0, uint64(i+1)))
	}
	return pool
}

func search(t *testing.T, pool *pgxpool.Pool, q index.ProductQuery) indexpg.ProductPage {
	t.Helper()
	if q.Locale == "" {
		q.Locale = "en-US"
	}
	if q.Limit == 0 {
		q.Limit = 10
	}
	page, err := indexpg.SearchProducts(context.Background(), pool, indexpg.LiveProducts, q)
	if err != nil {
		t.Fatal(err)
	}
	return page
}

func hitIDs(p indexpg.ProductPage) []string {
	ids := make([]string, len(p.Hits))
	for i, h := range p.Hits {
		ids[i] = h.ID
	}
	return ids
}

// TestSearchProductsRanksTheExactNameFirstThenNameMatches: an exact name
// match, then names that hold every word of the query, then products that
// hold them elsewhere (category, description), even when those mention
// the words more often and ts_rank alone would put them first.
func TestSearchProductsRanksTheExactNameFirstThenNameMatches(t *testing.T) {
	t.Parallel()
	pool := catalog(t,
		doc("p1", "lighting", "Oak reading lamp", "warm light"),
		doc("p2", "lamps", "Oak table light", "oak lamp oak lamp oak lamp oak lamp"),
		doc("p3", "lighting", "Oak lamp", "plain"),
		doc("p4", "chairs", "Oak chair", "sturdy"),
		doc("p5", "lighting", "Oak lamp, oak lamp stand", "twice the words, not the exact name"),
	)
	page := search(t, pool, index.ProductQuery{Q: "oak lamp"})
	if got, want := hitIDs(page), []string{"p3", "p5", "p1", "p2"}; !slices.Equal(got, want) {
		t.Errorf("hits = %v, want %v (exact name, names by rank, elsewhere)", got, want)
	}
	if page.Match != index.MatchFullText || page.Next != nil {
		t.Errorf("match %q, next %v; want full text and no next page", page.Match, page.Next)
	}
	if h := page.Hits[0]; h.Name != "Oak lamp" || h.Locale != "en-US" || h.SKU != "SKU-p3" || h.Prices["EUR"] != 1999 || h.Images == nil {
		t.Errorf("hit = %+v", h)
	}
}

func TestSearchProductsFindsOnlyActiveProductsOfTheCategoryInTheQuerysLocale(t *testing.T) {
	t.Parallel()
	draft := doc("p2", "lamps", "Lamp draft", "")
	draft.Status = index.StatusDraft
	archived := doc("p3", "lamps", "Lamp archived", "")
	archived.Status = index.StatusArchived
	pool := catalog(t, doc("p1", "lamps", "Lamp", ""), draft, archived, doc("p4", "desks", "Desk lamp", ""))
	if got := hitIDs(search(t, pool, index.ProductQuery{Q: "lamp"})); !slices.Equal(got, []string{"p1", "p4"}) {
		t.Errorf("hits = %v, want only the active p1, p4", got)
	}
	if got := hitIDs(search(t, pool, index.ProductQuery{Q: "lamp", Category: "desks"})); !slices.Equal(got, []string{"p4"}) {
		t.Errorf("desks = %v, want p4", got)
	}
	de := search(t, pool, index.ProductQuery{Q: "lamp", Locale: "de-DE"})
	if got := hitIDs(de); !slices.Equal(got, []string{"p1", "p4"}) {
		t.Errorf("de-DE hits = %v, want p1, p4 once each", got)
	}
	for _, h := range de.Hits {
		if h.Locale != "de-DE" || h.Name != "DE "+map[string]string{"p1": "Lamp", "p4": "Desk lamp"}[h.ID] {
			t.Errorf("de-DE hit %s in %s: %q, want the German text", h.ID, h.Locale, h.Name)
		}
	}
}

// TestSearchProductsFallsBackToFuzzyNamesWhenNothingMatches: a typo finds
// the name by trigram similarity; unrelated names stay out.
func TestSearchProductsFallsBackToFuzzyNamesWhenNothingMatches(t *testing.T) {
	t.Parallel()
	pool := catalog(t, doc("p1", "lamps", "Walnut lamp", ""), doc("p2", "chairs", "Chair", ""))
	page := search(t, pool, index.ProductQuery{Q: "walnt"})
	if page.Match != index.MatchFuzzy || !slices.Equal(hitIDs(page), []string{"p1"}) {
		t.Errorf("search for a typo = %v (%s), want p1 by fuzzy match", hitIDs(page), page.Match)
	}
	if none := search(t, pool, index.ProductQuery{Q: "zebra"}); len(none.Hits) != 0 || none.Hits == nil {
		t.Errorf("search for an unrelated word = %#v, want an empty list", none.Hits)
	}
}

// TestSearchProductsPagesWithoutGapsOrRepeats: following Next walks the
// whole result once, in the order of one big page, and a cursor keeps
// its match mode.
func TestSearchProductsPagesWithoutGapsOrRepeats(t *testing.T) {
	t.Parallel()
	var docs []index.Product
	for _, id := range []string{"p1", "p2", "p3", "p4", "p5"} {
		docs = append(docs, doc(id, "lamps", "Oak lamp "+id, ""))
	}
	docs = append(docs, doc("p6", "lamps", "Lamp", "")) // ranks first
	pool := catalog(t, docs...)
	for _, q := range []string{"lamp", "lamq"} {
		all := hitIDs(search(t, pool, index.ProductQuery{Q: q, Limit: 100}))
		if len(all) != 6 {
			t.Fatalf("%q: one page = %v, want 6 hits", q, all)
		}
		var walked []string
		var after *index.Cursor
		for range 10 {
			page := search(t, pool, index.ProductQuery{Q: q, Limit: 4, After: after})
			walked = append(walked, hitIDs(page)...)
			if page.Next == nil {
				break
			}
			if page.Next.Mode != page.Match {
				t.Errorf("%q: cursor mode %q, page matched %q", q, page.Next.Mode, page.Match)
			}
			after = page.Next
		}
		if !slices.Equal(walked, all) {
			t.Errorf("%q: pages = %v, want %v", q, walked, all)
		}
	}
}

func TestDropTablesDropsARebuildsTablesAndToleratesMissingOnes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testinfra.Postgres(t, migrations.FS).Pool
	rebuilt := indexpg.LiveProducts.WithSuffix("r1")
	if err := indexpg.CreateTables(ctx, pool, indexpg.LiveProducts, rebuilt); err != nil {
		t.Fatal(err)
	}
	left, err := indexpg.Leftovers(ctx, pool, indexpg.LiveProducts)
	if err != nil || len(left) != 3 {
		t.Fatalf("Leftovers = %v, %v; want the 3 tables of the rebuild", left, err)
	}
	if err := indexpg.DropTable(ctx, pool, rebuilt.Texts); err != nil {
		t.Fatal(err)
	}
	if err := indexpg.DropTables(ctx, pool, rebuilt); err != nil { // one of them is gone already
		t.Fatalf("DropTables with a table missing: %v", err)
	}
	if left, err := indexpg.Leftovers(ctx, pool, indexpg.LiveProducts); err != nil || len(left) != 0 {
		t.Errorf("after DropTables: %v, %v", left, err)
	}
	if err := indexpg.DropTable(ctx, pool, "no_such_table"); err != nil {
		t.Errorf("DropTable of a missing table: %v", err)
	}
	var live int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = ANY($1)`, indexpg.LiveProducts.Tables()).Scan(&live); err != nil || live != 3 {
		t.Errorf("live tables left: %d (%v), want 3", live, err)
	}
}
