package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"time"

	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/catalog/internal/productsvc"
)

// seed is `catalog seed --products N`: demo products, each with its
// catalog.product_changed event in the outbox.
func seed(ctx context.Context, inv *service.Invocation) error {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	n := fs.Int("products", 1000, "number of products")
	if err := fs.Parse(inv.Args); err != nil || *n < 1 || *n > 1_000_000 {
		return errors.New("seed: --products must be 1..1000000 (usage: catalog seed --products N)")
	}
	pool, err := inv.Pool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	start := time.Now()
	if err := productsvc.Seed(ctx, pool, outbox.New(catalogapi.Stream), *n, time.Now); err != nil {
		return err
	}
	rt, _ := inv.Runtime(ctx)
	rt.Log.InfoContext(ctx, "seeded", "products", *n, "took", time.Since(start).String())
	return nil
}
