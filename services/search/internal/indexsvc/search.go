// Package indexsvc holds search's use cases: answering searches with the
// projection's freshness, sampling the live consumers' lag, and rebuilding
// or checking a projection by replaying its stream.
//
// Contract: every answer is derived from a projection that may lag behind
// its stream; the answer says by how much (Freshness: when the projection
// last finished an event, and the broker's lag of the live group). The
// projections converge: a rebuild from the stream equals the live
// projection once both have finished the same events (Check proves it).
package indexsvc

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/services/search/internal/index"
	"github.com/shopfloor/shopfloor/services/search/internal/indexpg"
	"github.com/shopfloor/shopfloor/services/search/searchapi"
)

// Source is a live projection and the stream it is built from.
type Source struct {
	// Stream is the stream's name (catalogapi.Stream, ordersapi.Stream;
	// tests use their own).
	Stream string
	// Partitions of the stream.
	Partitions int
	// Projection is the live projection it feeds.
	Projection indexpg.Projection
}

// LagReader tells the last lag sampled for a stream's live group; ok is
// false when it is unknown (never sampled, or the last sample is too old).
type LagReader interface {
	Lag(stream string) (lag Lag, ok bool)
}

var _ LagReader = (*LagSampler)(nil)

// Searcher answers searches from the live projections.
type Searcher struct {
	pool     *pgxpool.Pool
	products Source
	orders   Source
	lags     LagReader
}

// NewSearcher returns a searcher over the products and orders sources;
// lags supplies the lag reported with each answer.
func NewSearcher(pool *pgxpool.Pool, products, orders Source, lags LagReader) *Searcher {
	return &Searcher{pool: pool, products: products, orders: orders, lags: lags}
}

// Products finds active products. The freshness is read before the
// search, so the answer reflects at least what it reports.
func (s *Searcher) Products(ctx context.Context, q index.ProductQuery) (searchapi.ProductResults, error) {
	f, err := s.freshness(ctx, s.products)
	if err != nil {
		return searchapi.ProductResults{}, err
	}
	page, err := indexpg.SearchProducts(ctx, s.pool, s.products.Projection, q)
	if err != nil {
		return searchapi.ProductResults{}, err
	}
	out := searchapi.ProductResults{Products: page.Hits, Match: page.Match, Freshness: f}
	if page.Next != nil {
		out.NextPageToken = page.Next.Encode()
	}
	return out, nil
}

// Orders finds orders.
func (s *Searcher) Orders(ctx context.Context, q index.OrderQuery) (searchapi.OrderResults, error) {
	f, err := s.freshness(ctx, s.orders)
	if err != nil {
		return searchapi.OrderResults{}, err
	}
	page, err := indexpg.SearchOrders(ctx, s.pool, s.orders.Projection, q)
	if err != nil {
		return searchapi.OrderResults{}, err
	}
	out := searchapi.OrderResults{Orders: page.Hits, Freshness: f}
	if page.Next != nil {
		out.NextPageToken = page.Next.Encode()
	}
	return out, nil
}

// freshness is read before the search it describes, so it is a lower bound:
// the results reflect at least every event it reports as applied (maybe
// one or two more).
func (s *Searcher) freshness(ctx context.Context, src Source) (searchapi.Freshness, error) {
	f := searchapi.Freshness{Stream: src.Stream}
	applied, event, err := indexpg.Freshness(ctx, s.pool, src.Projection)
	if err != nil {
		return f, err
	}
	if applied != nil {
		t := applied.UTC()
		f.LastAppliedAt = &t
	}
	if event != nil {
		t := event.UTC()
		f.LastEventAt = &t
	}
	if lag, ok := s.lags.Lag(src.Stream); ok {
		secs, msgs, at := lag.Seconds, lag.Messages, lag.SampledAt.UTC()
		f.LagSeconds, f.LagMessages, f.LagSampledAt = &secs, &msgs, &at
	}
	return f, nil
}
