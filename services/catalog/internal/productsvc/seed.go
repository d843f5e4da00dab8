package productsvc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/money"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/catalog/internal/product"
	"github.com/shopfloor/shopfloor/services/catalog/internal/productpg"
)

var (
	seedCategories = []string{"lamps", "chairs", "tables", "rugs", "shelves", "mirrors", "clocks", "vases"}
	seedAdjectives = []string{"Oak", "Walnut", "Brass", "Linen", "Nordic", "Round", "Tall", "Compact", "Vintage", "Modular"}
	seedGerman     = map[string]string{"lamps": "Lampe", "chairs": "Stuhl", "tables": "Tisch", "rugs": "Teppich", "shelves": "Regal", "mirrors": "Spiegel", "clocks": "Uhr", "vases": "Vase"}
)

// Seed inserts n active products with realistic, deterministic data and
// their product.created events (so projections see them), 1 000 per
// transaction with COPY.
func Seed(ctx context.Context, pool *pgxpool.Pool, ob *outbox.Outbox, n int, now func() time.Time) error {
	rng := rand.New(rand.NewPCG(42, uint64(n))) //nolint:gosec // G404: demo data, not security
	const chunk = 1000
	for start := 0; start < n; start += chunk {
		ps := make([]product.Product, 0, chunk)
		evs := make([]events.Envelope, 0, chunk)
		for i := start; i < min(start+chunk, n); i++ {
			p, err := seedProduct(rng, i)
			if err != nil {
				return err
			}
			ev, err := events.New("catalog", catalogapi.EventProductCreated, p.ID, catalogapi.SchemaVersion, 1, Changed(p), now())
			if err != nil {
				return err
			}
			ps, evs = append(ps, p), append(evs, ev)
		}
		err := pgdb.InTx(ctx, pool, func(tx pgx.Tx) error {
			if err := productpg.CopyProducts(ctx, tx, ps); err != nil {
				return err
			}
			return ob.Publish(ctx, tx, evs...)
		})
		if err != nil {
			return fmt.Errorf("seed products %d–%d: %w", start+1, start+len(ps), err)
		}
	}
	return nil
}

func seedProduct(rng *rand.Rand, i int) (product.Product, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return product.Product{}, err
	}
	cat := seedCategories[rng.IntN(len(seedCategories))]
	adj := seedAdjectives[rng.IntN(len(seedAdjectives))]
	noun := cat[:len(cat)-1]
	eur := int64(500 + rng.IntN(50_000))
	p := product.Product{
		ID: id.String(), SKU: fmt.Sprintf("SEED-%06d-%04d", i+1, rng.IntN(10_000)), Category: cat, Status: product.StatusActive, Version: 1,
		Images: []string{fmt.Sprintf("https://img.shopfloor.dev/%s/%d.jpg", cat, i+1)},
		Translations: map[string]catalogapi.ProductText{
			"en-US": {Name: fmt.Sprintf("%s %s %d", adj, noun, i+1), Description: "A " + strings.ToLower(adj) + " " + noun + " for everyday use."},
			"de-DE": {Name: fmt.Sprintf("%s %s %d", adj, seedGerman[cat], i+1), Description: "Für jeden Tag."},
		},
		Prices: seedPrices(eur),
	}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("seed product %d: %w", i, err)
	}
	return p, nil
}

// seedRates are the demo exchange rates from EUR, in percent. Every
// currency pkg/money declares needs one: a currency without a rate gets
// price 0, which product validation refuses, so seeding fails and says so.
var seedRates = map[string]int64{"EUR": 100, "USD": 108, "GBP": 85}

// seedPrices prices a seeded product in every currency shopfloor trades
// in (money.Currencies), from its EUR price.
func seedPrices(eur int64) map[string]int64 {
	prices := make(map[string]int64, len(money.Currencies()))
	for _, c := range money.Currencies() {
		prices[c] = eur * seedRates[c] / 100
	}
	return prices
}
