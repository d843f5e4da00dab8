// Package productsvc holds catalog's use cases: reads through the
// versioned cache, writes that bump the version and emit the event in one
// transaction.
package productsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/shopfloor/shopfloor/pkg/cache"
	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/money"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/catalog/internal/product"
	"github.com/shopfloor/shopfloor/services/catalog/internal/productpg"
)

// Service is catalog's application layer.
type Service struct {
	pool   *pgxpool.Pool
	cache  *cache.Cache[catalogapi.Product]
	outbox *outbox.Outbox
	log    *slog.Logger
	now    func() time.Time
}

// New wires a service; the cache loads from pool.
func New(pool *pgxpool.Pool, newCache func(cache.Loader[catalogapi.Product]) (*cache.Cache[catalogapi.Product], error), ob *outbox.Outbox, log *slog.Logger, now func() time.Time) (*Service, error) {
	s := &Service{pool: pool, outbox: ob, log: log, now: now}
	c, err := newCache(s.load)
	if err != nil {
		return nil, err
	}
	s.cache = c
	return s, nil
}

// Cache is the product cache (for the admin bypass switch and warming).
func (s *Service) Cache() *cache.Cache[catalogapi.Product] { return s.cache }

func variant(locale, currency string) string { return locale + ":" + currency }

// load is the cache's loader: the row with its version, rendered.
// Drafts and archived products are not public: not found.
func (s *Service) load(ctx context.Context, id, v string) (catalogapi.Product, int64, error) {
	locale, currency, _ := strings.Cut(v, ":")
	p, err := productpg.Get(ctx, s.pool, id, false)
	if errors.Is(err, product.ErrNotFound) || (err == nil && p.Status != product.StatusActive) {
		return catalogapi.Product{}, 0, cache.ErrNotFound
	}
	if err != nil {
		return catalogapi.Product{}, 0, err
	}
	r, err := p.Render(locale, currency)
	if err != nil {
		return catalogapi.Product{}, 0, err
	}
	return r, p.Version, nil
}

// Warm loads the current version of id into the cache for the default
// locale and currency (the variants most readers ask for).
func (s *Service) Warm(ctx context.Context, id string) error {
	return s.cache.Warm(ctx, id, variant(product.Locales[0], money.Default()))
}

// Get returns the public product for locale and currency.
func (s *Service) Get(ctx context.Context, id, locale, currency string) (catalogapi.Product, cache.Meta, error) {
	if _, err := uuid.Parse(id); err != nil {
		return catalogapi.Product{}, cache.Meta{}, product.ErrNotFound
	}
	p, m, err := s.cache.Get(ctx, id, variant(locale, currency))
	if errors.Is(err, cache.ErrNotFound) {
		return p, m, product.ErrNotFound
	}
	return p, m, err
}

// Batch returns the public products with ids (at most 100) in currency,
// in the order asked; unknown, draft and archived ids, and products with no
// price in currency, are reported missing. The products are read through
// the cache concurrently (batchReads at a time): a batch costs about one
// read's latency, not one per line, which matters when each round trip is
// slow (the latency drill adds 200ms to every link).
func (s *Service) Batch(ctx context.Context, ids []string, locale, currency string) (catalogapi.ProductBatch, error) {
	out := catalogapi.ProductBatch{Products: []catalogapi.Product{}}
	items, err := s.batchItems(ctx, ids, locale, currency)
	if err != nil {
		return out, err
	}
	for i, id := range ids {
		if items[i].ok {
			out.Products = append(out.Products, items[i].p)
		} else {
			out.Missing = append(out.Missing, id)
		}
	}
	return out, nil
}

// BatchBySKU is Batch for products named by sku (at most 100): the skus
// are resolved to ids in one query, then each product is read through the
// cache like Batch does. Missing lists the skus that are unknown, name a
// draft or archived product or one with no price in currency. A product
// is only ever returned under its own sku: when the cached product's sku
// differs from the one asked for (the sku just moved to another product,
// and the cache has not seen the change yet) the sku is reported missing.
func (s *Service) BatchBySKU(ctx context.Context, skus []string, locale, currency string) (catalogapi.ProductBatch, error) {
	out := catalogapi.ProductBatch{Products: []catalogapi.Product{}}
	ids, err := productpg.IDsBySKU(ctx, s.pool, skus)
	if err != nil {
		return out, err
	}
	var known []string
	for _, sku := range skus {
		if id, ok := ids[sku]; ok {
			known = append(known, id)
		}
	}
	items, err := s.batchItems(ctx, known, locale, currency)
	if err != nil {
		return out, err
	}
	k := 0
	for _, sku := range skus {
		if _, ok := ids[sku]; !ok {
			out.Missing = append(out.Missing, sku)
			continue
		}
		it := items[k]
		k++
		if it.ok && it.p.SKU == sku {
			out.Products = append(out.Products, it.p)
		} else {
			out.Missing = append(out.Missing, sku)
		}
	}
	return out, nil
}

// batchReads bounds the concurrent reads of one batch.
const batchReads = 8

type batchResult struct {
	p  catalogapi.Product
	ok bool
}

// batchItems reads ids through the cache, batchReads at a time, and
// returns the results in the order of ids; the first error fails all.
func (s *Service) batchItems(ctx context.Context, ids []string, locale, currency string) ([]batchResult, error) {
	out := make([]batchResult, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(batchReads)
	for i, id := range ids {
		g.Go(func() error {
			p, ok, err := s.batchItem(gctx, id, locale, currency)
			out[i] = batchResult{p: p, ok: ok}
			return err
		})
	}
	return out, g.Wait()
}

// batchItem reads one product of a batch through the cache; ok is false
// when it is not public or has no price in currency.
func (s *Service) batchItem(ctx context.Context, id, locale, currency string) (catalogapi.Product, bool, error) {
	p, _, err := s.Get(ctx, id, locale, currency)
	switch {
	case errors.Is(err, product.ErrNotFound), errors.Is(err, product.ErrNoPrice):
		return p, false, nil
	case err != nil:
		return p, false, err
	}
	return p, true, nil
}

// List returns a page of active products (from PostgreSQL: lists are
// cached by the CDN, not in Redis).
func (s *Service) List(ctx context.Context, category, afterID string, limit int, locale, currency string) (catalogapi.ProductList, error) {
	ps, err := productpg.ListActive(ctx, s.pool, category, afterID, limit+1)
	if err != nil {
		return catalogapi.ProductList{}, err
	}
	out := catalogapi.ProductList{Products: []catalogapi.Product{}}
	for i, p := range ps {
		if i == limit {
			out.NextPageToken = ps[i-1].ID
			break
		}
		r, err := p.Render(locale, currency)
		if errors.Is(err, product.ErrNoPrice) {
			continue
		}
		if err != nil {
			return out, err
		}
		out.Products = append(out.Products, r)
	}
	return out, nil
}

// AdminGet returns the full product, any status, from PostgreSQL.
func (s *Service) AdminGet(ctx context.Context, id string) (product.Product, error) {
	if _, err := uuid.Parse(id); err != nil {
		return product.Product{}, product.ErrNotFound
	}
	return productpg.Get(ctx, s.pool, id, false)
}

// Create validates and inserts p as version 1 and emits product.created.
func (s *Service) Create(ctx context.Context, p product.Product) (product.Product, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return p, err
	}
	p.ID, p.Version = id.String(), 1
	if p.Status == "" {
		p.Status = product.StatusActive
	}
	if err := p.Validate(); err != nil {
		return p, err
	}
	err = pgdb.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		if err := productpg.Insert(ctx, tx, p); err != nil {
			return err
		}
		return s.emit(ctx, tx, catalogapi.EventProductCreated, p)
	})
	if err != nil {
		return p, err
	}
	s.invalidate(ctx, p)
	return p, nil
}

// Update applies change to the product if its version is ifMatch, bumps
// the version and emits product.updated (product.archived when the change
// archives it).
func (s *Service) Update(ctx context.Context, id string, ifMatch int64, change func(*product.Product)) (product.Product, error) {
	if _, err := uuid.Parse(id); err != nil {
		return product.Product{}, product.ErrNotFound
	}
	var p product.Product
	err := pgdb.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		cur, err := productpg.Get(ctx, tx, id, true)
		if err != nil {
			return err
		}
		if cur.Version != ifMatch {
			p = cur
			return product.ErrVersionMismatch
		}
		next := cur
		change(&next)
		next.ID, next.Version = cur.ID, cur.Version+1
		if err := next.Validate(); err != nil {
			return err
		}
		if err := productpg.Update(ctx, tx, next); err != nil {
			return err
		}
		typ := catalogapi.EventProductUpdated
		if next.Status == product.StatusArchived && cur.Status != product.StatusArchived {
			typ = catalogapi.EventProductArchived
		}
		p = next
		return s.emit(ctx, tx, typ, next)
	})
	if err != nil {
		return p, err
	}
	s.invalidate(ctx, p)
	return p, nil
}

func (s *Service) emit(ctx context.Context, tx pgx.Tx, typ string, p product.Product) error {
	ev, err := events.New("catalog", typ, p.ID, catalogapi.SchemaVersion, p.Version, Changed(p), s.now())
	if err != nil {
		return fmt.Errorf("%s event: %w", typ, err)
	}
	return s.outbox.Publish(ctx, tx, ev)
}

// Changed is the payload of p's events: its whole state after the change
// (event-carried state transfer), so that projections such as search can
// be rebuilt from the CATALOG stream alone. Maps and slices are copied: the
// payload shares nothing with p.
func Changed(p product.Product) catalogapi.ProductChanged {
	return catalogapi.ProductChanged{ID: p.ID, Version: p.Version, Category: p.Category, Status: p.Status, SKU: p.SKU,
		Translations: maps.Clone(p.Translations), Prices: maps.Clone(p.Prices), Images: slices.Clone(p.Images)}
}

// invalidate moves the cache pointer right after commit, best effort: the
// invalidation consumer does it again from the stream, so a Redis outage
// here only delays the new version by the consumer's lag.
func (s *Service) invalidate(ctx context.Context, p product.Product) {
	if err := s.cache.Invalidate(ctx, p.ID, p.Version); err != nil {
		s.log.WarnContext(ctx, "cache invalidation deferred to the consumer", "product", p.ID, "version", p.Version, "err", err)
	}
}
