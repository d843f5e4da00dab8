package productpg_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/catalog/internal/product"
	"github.com/shopfloor/shopfloor/services/catalog/internal/productpg"
	"github.com/shopfloor/shopfloor/services/catalog/migrations"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// setup is a database with catalog's real migrations.
func setup(t *testing.T) *pgxpool.Pool {
	t.Helper()
	return testinfra.Postgres(t, migrations.FS).Pool
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// newProduct is an active product of category with sku, at version 1.
func newProduct(sku, category string) product.Product {
	return product.Product{ID: newID(), SKU: sku, Category: category, Images: []string{"https://img.example.com/" + sku + ".jpg"},
		Status: product.StatusActive, Version: 1,
		Translations: map[string]catalogapi.ProductText{"en-US": {Name: "Lamp " + sku, Description: "Oak"}, "de-DE": {Name: "Lampe " + sku}},
		Prices:       map[string]int64{"EUR": 1999, "USD": 2199}}
}

func insert(t *testing.T, db *pgxpool.Pool, ps ...product.Product) {
	t.Helper()
	for _, p := range ps {
		if err := pgdb.InTx(context.Background(), db, func(tx pgx.Tx) error { return productpg.Insert(context.Background(), tx, p) }); err != nil {
			t.Fatalf("insert %s: %v", p.SKU, err)
		}
	}
}

func get(t *testing.T, db *pgxpool.Pool, id string) product.Product {
	t.Helper()
	p, err := productpg.Get(context.Background(), db, id, false)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func equal(a, b product.Product) bool {
	return a.ID == b.ID && a.SKU == b.SKU && a.Category == b.Category && slices.Equal(a.Images, b.Images) &&
		a.Status == b.Status && a.Version == b.Version && maps.Equal(a.Translations, b.Translations) && maps.Equal(a.Prices, b.Prices)
}

func ids(ps []product.Product) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}

func TestGetReturnsTheInsertedProduct(t *testing.T) {
	t.Parallel()
	db := setup(t)
	want := newProduct("LAMP-1", "lamps")
	insert(t, db, want)
	if got := get(t, db, want.ID); !equal(got, want) {
		t.Errorf("Get = %+v\nwant  %+v", got, want)
	}
	// A product without images is stored with an empty list, read back empty.
	bare := newProduct("LAMP-2", "lamps")
	bare.Images = nil
	insert(t, db, bare)
	if got := get(t, db, bare.ID); got.Images == nil || len(got.Images) != 0 {
		t.Errorf("images of a product stored without = %#v, want an empty list", got.Images)
	}
}

func TestGetReturnsNotFoundForAnUnknownProduct(t *testing.T) {
	t.Parallel()
	db := setup(t)
	if _, err := productpg.Get(context.Background(), db, newID(), false); !errors.Is(err, product.ErrNotFound) {
		t.Errorf("Get of an unknown id = %v, want product.ErrNotFound", err)
	}
}

// TestGetForUpdateHoldsTheProductUntilTheTransactionEnds: an update by
// another transaction waits for the lock Get(forUpdate) takes.
func TestGetForUpdateHoldsTheProductUntilTheTransactionEnds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := setup(t)
	p := newProduct("LAMP-1", "lamps")
	insert(t, db, p)
	for _, forUpdate := range []bool{true, false} {
		holder, err := db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := productpg.Get(ctx, holder, p.ID, forUpdate); err != nil {
			t.Fatal(err)
		}
		err = pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '200ms'`); err != nil {
				return err
			}
			return productpg.Update(ctx, tx, p)
		})
		if locked := pgdb.IsCode(err, "55P03"); locked != forUpdate { // lock_not_available
			t.Errorf("forUpdate=%v: a concurrent update = %v", forUpdate, err)
		}
		_ = holder.Rollback(ctx)
	}
}

func TestInsertRefusesATakenSKU(t *testing.T) {
	t.Parallel()
	db := setup(t)
	first := newProduct("LAMP-1", "lamps")
	insert(t, db, first)
	err := pgdb.InTx(context.Background(), db, func(tx pgx.Tx) error {
		return productpg.Insert(context.Background(), tx, newProduct("LAMP-1", "mugs"))
	})
	if !errors.Is(err, product.ErrSKUTaken) {
		t.Errorf("Insert of a taken sku = %v, want product.ErrSKUTaken", err)
	}
	// A taken id is another error: only the sku is the caller's to fix.
	again := newProduct("LAMP-2", "lamps")
	again.ID = first.ID
	err = pgdb.InTx(context.Background(), db, func(tx pgx.Tx) error { return productpg.Insert(context.Background(), tx, again) })
	if err == nil || errors.Is(err, product.ErrSKUTaken) {
		t.Errorf("Insert of a taken id = %v, want an error other than ErrSKUTaken", err)
	}
}

func TestUpdateWritesEveryFieldAndRefusesATakenSKU(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := setup(t)
	p, other := newProduct("LAMP-1", "lamps"), newProduct("MUG-1", "mugs")
	insert(t, db, p, other)
	p.SKU, p.Category, p.Images, p.Status, p.Version = "LAMP-1B", "lighting", nil, product.StatusArchived, 2
	p.Translations = map[string]catalogapi.ProductText{"en-US": {Name: "Old lamp"}}
	p.Prices = map[string]int64{"EUR": 999}
	if err := pgdb.InTx(ctx, db, func(tx pgx.Tx) error { return productpg.Update(ctx, tx, p) }); err != nil {
		t.Fatal(err)
	}
	want := p
	want.Images = []string{}
	if got := get(t, db, p.ID); !equal(got, want) {
		t.Errorf("after Update: %+v\nwant %+v", got, want)
	}
	var changed bool
	if err := db.QueryRow(ctx, `SELECT updated_at > created_at FROM products WHERE id = $1`, p.ID).Scan(&changed); err != nil || !changed {
		t.Errorf("updated_at not moved by Update (%v)", err)
	}

	taken := p
	taken.SKU, taken.Version = other.SKU, 3
	err := pgdb.InTx(ctx, db, func(tx pgx.Tx) error { return productpg.Update(ctx, tx, taken) })
	if !errors.Is(err, product.ErrSKUTaken) {
		t.Errorf("Update to a taken sku = %v, want product.ErrSKUTaken", err)
	}
	if got := get(t, db, p.ID); !equal(got, want) {
		t.Errorf("the refused Update changed the product: %+v", got)
	}
}

func TestGetManyReturnsOnlyTheProductsThatExist(t *testing.T) {
	t.Parallel()
	db := setup(t)
	a, b := newProduct("LAMP-1", "lamps"), newProduct("MUG-1", "mugs")
	b.Status = product.StatusDraft // any status
	insert(t, db, a, b)
	got, err := productpg.GetMany(context.Background(), db, []string{b.ID, newID(), a.ID})
	if err != nil {
		t.Fatal(err)
	}
	gotIDs := ids(got)
	slices.Sort(gotIDs)
	if want := []string{a.ID, b.ID}; !slices.Equal(gotIDs, want) {
		t.Errorf("GetMany = %v, want %v", gotIDs, want)
	}
	for _, p := range got {
		if want := map[string]product.Product{a.ID: a, b.ID: b}[p.ID]; !equal(p, want) {
			t.Errorf("GetMany returned %+v, want %+v", p, want)
		}
	}
	if none, err := productpg.GetMany(context.Background(), db, nil); err != nil || len(none) != 0 {
		t.Errorf("GetMany(nil) = %v, %v; want none", none, err)
	}
}

func TestIDsBySKUResolvesKnownSKUsWhateverTheirStatus(t *testing.T) {
	t.Parallel()
	db := setup(t)
	active, archived := newProduct("LAMP-1", "lamps"), newProduct("LAMP-2", "lamps")
	archived.Status = product.StatusArchived
	insert(t, db, active, archived)
	got, err := productpg.IDsBySKU(context.Background(), db, []string{"LAMP-1", "NOPE-1", "LAMP-2", "LAMP-1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"LAMP-1": active.ID, "LAMP-2": archived.ID}; !maps.Equal(got, want) {
		t.Errorf("IDsBySKU = %v, want %v", got, want)
	}
}

// TestListActivePagesInIDOrderAndSkipsInactive: the cursor (afterID)
// walks active products in id order, optionally of one category; drafts
// and archived products never appear.
func TestListActivePagesInIDOrderAndSkipsInactive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := setup(t)
	var lamps, all []string
	for i, status := range []string{product.StatusActive, product.StatusDraft, product.StatusActive, product.StatusArchived, product.StatusActive, product.StatusActive} {
		category := []string{"lamps", "mugs"}[i%2]
		p := newProduct("SKU-"+string(rune('Z'-i)), category) // sku order is not id order
		p.Status = status
		insert(t, db, p)
		if status == product.StatusActive {
			all = append(all, p.ID)
			if category == "lamps" {
				lamps = append(lamps, p.ID)
			}
		}
	}
	slices.Sort(all)
	slices.Sort(lamps)
	walk := func(category string) []string {
		t.Helper()
		var got []string
		after := ""
		for {
			page, err := productpg.ListActive(ctx, db, category, after, 2)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > 2 {
				t.Fatalf("a page of %d, limit 2", len(page))
			}
			if len(page) == 0 {
				return got
			}
			got = append(got, ids(page)...)
			after = page[len(page)-1].ID
		}
	}
	if got := walk(""); !slices.Equal(got, all) {
		t.Errorf("every category: %v\nwant %v", got, all)
	}
	if got := walk("lamps"); !slices.Equal(got, lamps) {
		t.Errorf("lamps: %v\nwant %v", got, lamps)
	}
	if got := walk("chairs"); len(got) != 0 {
		t.Errorf("an empty category: %v", got)
	}
}

func TestCopyProductsInsertsEveryProduct(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := setup(t)
	ps := []product.Product{newProduct("SEED-1", "lamps"), newProduct("SEED-2", "mugs"), newProduct("SEED-3", "lamps")}
	ps[1].Images = nil
	if err := pgdb.InTx(ctx, db, func(tx pgx.Tx) error { return productpg.CopyProducts(ctx, tx, ps) }); err != nil {
		t.Fatal(err)
	}
	for _, want := range ps {
		if want.Images == nil {
			want.Images = []string{}
		}
		if got := get(t, db, want.ID); !equal(got, want) {
			t.Errorf("copied %+v\nread back %+v", want, got)
		}
	}
	// COPY is all or nothing: a batch with a taken sku writes none of it.
	err := pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		return productpg.CopyProducts(ctx, tx, []product.Product{newProduct("SEED-4", "lamps"), newProduct("SEED-1", "lamps")})
	})
	if err == nil {
		t.Fatal("CopyProducts with a taken sku succeeded")
	}
	if m, err := productpg.IDsBySKU(ctx, db, []string{"SEED-4"}); err != nil || len(m) != 0 {
		t.Errorf("the failed copy left %v (%v)", m, err)
	}
}
