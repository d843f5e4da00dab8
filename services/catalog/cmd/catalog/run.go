package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shopfloor/shopfloor/pkg/cache"
	"github.com/shopfloor/shopfloor/pkg/httpcache"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/catalog/internal/producthttp"
	"github.com/shopfloor/shopfloor/services/catalog/internal/productstream"
	"github.com/shopfloor/shopfloor/services/catalog/internal/productsvc"
)

// wire builds the roles on the connected database: the product service
// over the cache (api and consumer), the routes, the relay and the
// invalidation consumer.
func wire(ctx context.Context, app *service.App, cfg *Config) error {
	var svc *productsvc.Service
	if app.HasAny(service.RoleAPI, service.RoleConsumer) {
		var err error
		if svc, err = productService(app, cfg); err != nil {
			return err
		}
	}
	if app.Has(service.RoleAPI) {
		mux := http.NewServeMux()
		producthttp.Routes(mux, svc, producthttp.Config{Authz: app.Authz, Log: app.Log,
			Public: httpcache.Policy{MaxAge: cfg.PublicMaxAge, SMaxAge: cfg.PublicSMaxAge}})
		app.OpenAPI(mux)
	}
	if !app.HasAny(service.RoleRelay, service.RoleConsumer) {
		return nil
	}
	broker, err := app.ConnectStreams(ctx, service.Streams{Own: []stream.StreamConfig{{Name: catalogapi.Stream, Partitions: cfg.Partitions}}})
	if err != nil {
		return err
	}
	if app.Has(service.RoleRelay) {
		relay, err := app.NewRelay(app.Pool, broker, catalogapi.Stream, cfg.Partitions)
		if err != nil {
			return err
		}
		app.Go("relay", relay.Run)
	}
	if app.Has(service.RoleConsumer) {
		inv := &productstream.Invalidator{Cache: svc.Cache(), Warm: svc.Warm, Log: app.Log}
		if len(cfg.CDNPurgeURLs) > 0 {
			inv.Purger = &productstream.Purger{URLs: cfg.CDNPurgeURLs, Secret: cfg.CDNPurgeSecret}
		}
		grp, err := app.NewGroup(broker, catalogapi.Stream, productstream.Group, cfg.Partitions, inv.Handle)
		if err != nil {
			return err
		}
		app.Go("catalog-consumer", grp.Run)
	}
	return nil
}

// productService is the product use case over the versioned cache in
// Redis (with the near layer in the api role); its "cache" task re-sends
// invalidations that failed while Redis was away and, in the api role,
// keeps the near layer in step.
func productService(app *service.App, cfg *Config) (*productsvc.Service, error) {
	ropts, err := cache.ClientOptions(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	rdb := redis.NewClient(ropts)
	app.Defer(func() { _ = rdb.Close() })
	ccfg := cache.Config{Class: "product", SoftTTL: cfg.CacheSoft, HardTTL: cfg.CacheHard, Registerer: app.Tel.Registry}
	if app.Has(service.RoleAPI) {
		ccfg.Near = cache.NearConfig{Entities: cfg.CacheNearEntities, TTL: cfg.CacheNearTTL}
	}
	ob := outbox.New(catalogapi.Stream, outbox.WithTraceInjector(app.Tel.Inject))
	svc, err := productsvc.New(app.Pool, func(load cache.Loader[catalogapi.Product]) (*cache.Cache[catalogapi.Product], error) {
		return cache.New(rdb, load, ccfg, app.Log)
	}, ob, app.Log, time.Now)
	if err != nil {
		return nil, err
	}
	svc.Cache().SetBypass(cfg.CacheBypass)
	app.Go("cache", svc.Cache().Run)
	return svc, nil
}
