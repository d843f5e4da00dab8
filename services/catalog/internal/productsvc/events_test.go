package productsvc_test

import (
	"context"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/cache"
	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/money"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/catalog/internal/product"
	"github.com/shopfloor/shopfloor/services/catalog/internal/productsvc"
	"github.com/shopfloor/shopfloor/services/catalog/migrations"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// outboxPayloads returns the ProductChanged payloads in the outbox, in
// commit order, with their event types.
func outboxPayloads(t *testing.T, db *testinfra.Database) ([]string, []catalogapi.ProductChanged) {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT payload FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var types []string
	var out []catalogapi.ProductChanged
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		ev, err := events.Unmarshal(b)
		if err != nil {
			t.Fatal(err)
		}
		var pc catalogapi.ProductChanged
		if err := ev.DecodeData(&pc); err != nil {
			t.Fatal(err)
		}
		if ev.AggregateVersion != pc.Version || ev.Subject != pc.ID {
			t.Errorf("%s: envelope (subject %s, version %d) disagrees with payload (%s, %d)", ev.Type, ev.Subject, ev.AggregateVersion, pc.ID, pc.Version)
		}
		types, out = append(types, ev.Type), append(out, pc)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return types, out
}

// TestEventsCarryTheProductState: every event of a product's life carries
// its whole state after the change, so a projection needs nothing else.
func TestEventsCarryTheProductState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations.FS)
	r := testinfra.Redis(t)
	log := slog.New(slog.DiscardHandler)
	svc, err := productsvc.New(db.Pool, func(load cache.Loader[catalogapi.Product]) (*cache.Cache[catalogapi.Product], error) {
		return cache.New(r.Client, load, cache.Config{Namespace: r.Prefix, Class: "product"}, log)
	}, outbox.New(catalogapi.Stream), log, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	p, err := svc.Create(ctx, product.Product{
		SKU: "LAMP-OAK-01", Category: "lamps", Images: []string{"https://img.shopfloor.dev/a.jpg"},
		Translations: map[string]catalogapi.ProductText{"en-US": {Name: "Oak lamp", Description: "Solid oak."}},
		Prices:       map[string]int64{"EUR": 4900},
	})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := svc.Update(ctx, p.ID, 1, func(p *product.Product) {
		p.Translations["de-DE"] = catalogapi.ProductText{Name: "Eichenlampe", Description: "Massive Eiche."}
		p.Prices["USD"] = 5300
		p.Images = append(p.Images, "https://img.shopfloor.dev/b.jpg")
	})
	if err != nil {
		t.Fatal(err)
	}
	p3, err := svc.Update(ctx, p.ID, 2, func(p *product.Product) { p.Status = product.StatusArchived })
	if err != nil {
		t.Fatal(err)
	}

	types, got := outboxPayloads(t, db)
	want := []catalogapi.ProductChanged{productsvc.Changed(p), productsvc.Changed(p2), productsvc.Changed(p3)}
	if !reflect.DeepEqual(types, []string{catalogapi.EventProductCreated, catalogapi.EventProductUpdated, catalogapi.EventProductArchived}) {
		t.Fatalf("event types = %v", types)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("payloads:\n got %+v\nwant %+v", got, want)
	}
	if v2 := got[1]; v2.SKU != "LAMP-OAK-01" || v2.Translations["de-DE"].Name != "Eichenlampe" || v2.Prices["USD"] != 5300 || len(v2.Images) != 2 {
		t.Errorf("product.updated lacks the new state: %+v", v2)
	}
	if got[0].Translations["de-DE"].Name != "" || len(got[0].Images) != 1 {
		t.Errorf("product.created shares state with later versions: %+v", got[0])
	}
	if got[2].Status != product.StatusArchived || got[2].Translations["en-US"].Name != "Oak lamp" {
		t.Errorf("product.archived: %+v", got[2])
	}
}

// TestSeedEventsCarryTheProductState: seeded products reach projections
// with their text too.
func TestSeedEventsCarryTheProductState(t *testing.T) {
	t.Parallel()
	db := testinfra.Postgres(t, migrations.FS)
	if err := productsvc.Seed(context.Background(), db.Pool, outbox.New(catalogapi.Stream), 3, time.Now); err != nil {
		t.Fatal(err)
	}
	_, got := outboxPayloads(t, db)
	if len(got) != 3 {
		t.Fatalf("%d events, want 3", len(got))
	}
	for _, pc := range got {
		if pc.SKU == "" || pc.Translations["en-US"].Name == "" || pc.Translations["de-DE"].Name == "" || len(pc.Images) != 1 {
			t.Errorf("seed event lacks state: %+v", pc)
		}
		// Priced in every currency pkg/money declares, none more.
		if len(pc.Prices) != len(money.Currencies()) {
			t.Errorf("seeded prices %v, want one per currency of %v", pc.Prices, money.Currencies())
		}
		for _, c := range money.Currencies() {
			if pc.Prices[c] < money.MinAmountMinor {
				t.Errorf("seeded product %s has no %s price: %v", pc.SKU, c, pc.Prices)
			}
		}
	}
}
