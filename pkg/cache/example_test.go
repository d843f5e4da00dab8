package cache_test

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shopfloor/shopfloor/pkg/cache"
)

// lamp is the cached value (a product); its version comes from the source of truth.
type lamp struct {
	ID      string
	Name    string
	Version int64
}

// Example reads through a versioned cache-aside: a miss loads from the
// source once per key and instance (concurrent readers wait for that load),
// a write bumps the entity's version pointer so that no reader can see the
// old value again, and Redis being down makes reads go to the source
// instead of failing.
func Example() {
	ctx := context.Background()
	var (
		rdb    redis.UniversalClient // redis.NewClient(...)
		logger = slog.Default()
	)
	load := func(ctx context.Context, id, variant string) (lamp, int64, error) {
		// SELECT ... FROM products WHERE id = $1: the value and its version.
		// A missing row is cache.ErrNotFound (cached briefly, NegativeTTL).
		return lamp{ID: id, Name: "Oak lamp", Version: 3}, 3, nil
	}
	c, err := cache.New(rdb, load, cache.Config{Class: "product", SoftTTL: 5 * time.Minute, HardTTL: time.Hour}, logger)
	if err != nil {
		return
	}

	// Read path: variant is what else the value depends on (locale, currency).
	p, meta, err := c.Get(ctx, "p-1", "en-US/EUR")
	if err != nil {
		logger.Error("read", "error", err)
		return
	}
	logger.Info("read", "name", p.Name, "result", meta.Result)

	// Write path, after the transaction that wrote version 4 committed (and
	// again from the stream, for every other instance).
	if err := c.Invalidate(ctx, "p-1", 4); err != nil {
		logger.Warn("invalidate", "error", err) // remembered and re-sent; reads of p-1 go to the source meanwhile
	}
}
