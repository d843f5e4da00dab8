package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/cache"
	"github.com/shopfloor/shopfloor/pkg/config"
	"github.com/shopfloor/shopfloor/pkg/httpcache"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/lifecycle"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/catalog/internal/producthttp"
	"github.com/shopfloor/shopfloor/services/catalog/internal/productstream"
	"github.com/shopfloor/shopfloor/services/catalog/internal/productsvc"
	"github.com/shopfloor/shopfloor/services/catalog/migrations"
)

// Config is the serve command's configuration, from the environment.
type Config struct {
	service.Base
	service.HTTP
	HTTPAddr string `env:"HTTP_ADDR" envDefault:":8081"`
	// AdminAddr is the admin listener: /metrics, /readyz details and
	// /v1/admin. Never publish it (ADR 0023).
	AdminAddr string `env:"ADMIN_ADDR" envDefault:":9081"`
	// RedisURL is the cache; catalog answers without it (slower).
	RedisURL string `env:"REDIS_URL" envDefault:"redis://127.0.0.1:6379/0"`
	// NATSURL is needed by the relay and invalidation roles.
	NATSURL    string `env:"NATS_URL"`
	Partitions int    `env:"CATALOG_PARTITIONS" envDefault:"8"`
	// Auth is the identity provider whose tokens the api role accepts:
	// operators for /v1/admin, services for products:batch (AUTH_ISSUER,
	// AUTH_AUDIENCE default "catalog"; ADR 0021, 0022).
	Auth        auth.Config
	CacheBypass bool          `env:"CACHE_BYPASS" envDefault:"false"`
	CacheSoft   time.Duration `env:"CACHE_SOFT_TTL" envDefault:"5m"`
	CacheHard   time.Duration `env:"CACHE_HARD_TTL" envDefault:"1h"`
	// The near cache: an in-process layer in front of Redis for the api
	// role, kept in step by Redis pub/sub (ADR 0016). 0 entities: off.
	CacheNearEntities int           `env:"CACHE_NEAR_ENTITIES" envDefault:"10000"`
	CacheNearTTL      time.Duration `env:"CACHE_NEAR_TTL" envDefault:"1s"`
	// Public read caching for browsers (max-age) and the CDN (s-maxage).
	PublicMaxAge  time.Duration `env:"PUBLIC_MAX_AGE" envDefault:"60s"`
	PublicSMaxAge time.Duration `env:"PUBLIC_S_MAXAGE" envDefault:"1h"`
	// CDNPurgeURLs receive PURGE by surrogate key from the invalidation
	// role (Varnish nodes), comma-separated. Empty: no CDN.
	CDNPurgeURLs []string `env:"CDN_PURGE_URLS"`
	// Roles: api, relay, invalidation.
	Roles []string `env:"ROLES" envDefault:"api,relay,invalidation"`
}

// Validate reports rules beyond one value's syntax.
func (c Config) Validate() []error {
	errs := service.CheckRoles(c.Roles, []string{"api", "relay", "invalidation"})
	if slices.Contains(c.Roles, "api") {
		errs = append(errs, c.Auth.Validate()...)
	}
	if (c.has("relay") || c.has("invalidation")) && c.NATSURL == "" {
		errs = append(errs, errors.New("NATS_URL: required by the relay and invalidation roles"))
	}
	if err := stream.CheckPartitions("CATALOG_PARTITIONS", c.Partitions); err != nil {
		errs = append(errs, err)
	}
	if c.CacheNearEntities < 0 {
		errs = append(errs, errors.New("CACHE_NEAR_ENTITIES: 0 (off) or more"))
	}
	if c.CacheNearEntities > 0 && (c.CacheNearTTL < time.Millisecond || c.CacheNearTTL > time.Minute) {
		errs = append(errs, errors.New("CACHE_NEAR_TTL: between 1ms and 1m (it bounds how stale a lost invalidation can leave a read)"))
	}
	return errs
}

func (c Config) has(role string) bool { return slices.Contains(c.Roles, role) }

const usage = `usage: catalog [serve | migrate | seed --products N | outbox ... | audit ... | dlq ...]`

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cmd := "serve"
	if len(args) > 1 {
		cmd = args[1]
	}
	switch cmd {
	case "serve", "migrate", "seed", "outbox", "audit":
	case "dlq":
		return service.DLQCommand(ctx, "catalog", catalogapi.Stream, args[min(2, len(args)):], getenv, stdout)
	default:
		return fmt.Errorf("unknown command %q (%s)", cmd, usage)
	}
	var (
		seedN int
		err   error
	)
	if cmd == "seed" {
		fs := flag.NewFlagSet("seed", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.IntVar(&seedN, "products", 1000, "number of products")
		if err := fs.Parse(args[min(2, len(args)):]); err != nil || seedN < 1 || seedN > 1_000_000 {
			return fmt.Errorf("seed: --products must be 1..1000000 (%s)", usage)
		}
	}
	var cfg Config
	if cmd == "serve" {
		if cfg, err = config.Load[Config](getenv); err != nil {
			return err
		}
	} else if cfg.Base, err = config.Load[service.Base](getenv); err != nil {
		return err
	}
	rt, err := service.Start(ctx, "catalog", cfg.Base, stdout)
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	switch cmd {
	case "migrate":
		return rt.Migrate(ctx, migrations.FS)
	case "outbox":
		return rt.OutboxCommand(ctx, args[min(2, len(args)):], stdout)
	case "audit":
		return rt.AuditCommand(ctx, args[min(2, len(args)):], stdout)
	case "seed":
		pool, err := rt.OpenPG(ctx)
		if err != nil {
			return err
		}
		defer pool.Close()
		start := time.Now()
		if err := productsvc.Seed(ctx, pool, outbox.New(catalogapi.Stream), seedN, time.Now); err != nil {
			return err
		}
		rt.Log.InfoContext(ctx, "seeded", "products", seedN, "took", time.Since(start).String())
		return nil
	}
	lns, err := service.Listen(cfg.HTTPAddr, cfg.AdminAddr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, rt, lns)
}

// serve runs the roles. HTTP starts at once (health answers while the
// database is being connected); API routes are mounted once it is up.
func serve(ctx context.Context, cfg Config, rt *service.Runtime, lns service.Listeners) error {
	log, tel := rt.Log, rt.Tel
	health := httpkit.NewHealth()
	health.AddCheck("postgres", rt.PG.Check)
	if cfg.has("relay") || cfg.has("invalidation") {
		rt.RequireNATS(health)
	}
	mux := rt.NewMuxes(health)
	api := service.NewGate("catalog")
	authz, err := rt.APIVerifier(cfg.Auth, cfg.has("api"), health)
	if err != nil {
		return err
	}
	mux.Public.Handle("/v1/", api)
	// The admin API (producthttp's /v1/admin routes, for operators) is
	// served on the admin listener only; the public one answers 404.
	mux.Admin.Handle(httpkit.AdminPrefix, api)

	g := lifecycle.NewGroup(log)
	g.Add("app", func(ctx context.Context) error {
		pool, err := rt.OpenPG(ctx)
		if err != nil {
			return service.Canceled(err)
		}
		defer pool.Close()
		ag := lifecycle.NewGroup(log)
		var svc *productsvc.Service
		if cfg.has("api") || cfg.has("invalidation") {
			ropts, err := cache.ClientOptions(cfg.RedisURL)
			if err != nil {
				return fmt.Errorf("REDIS_URL: %w", err)
			}
			rdb := redis.NewClient(ropts)
			defer rdb.Close()
			ob := outbox.New(catalogapi.Stream, outbox.WithTraceInjector(tel.Inject))
			ccfg := cache.Config{Class: "product", SoftTTL: cfg.CacheSoft, HardTTL: cfg.CacheHard, Registerer: tel.Registry}
			if cfg.has("api") {
				ccfg.Near = cache.NearConfig{Entities: cfg.CacheNearEntities, TTL: cfg.CacheNearTTL}
			}
			svc, err = productsvc.New(pool, func(load cache.Loader[catalogapi.Product]) (*cache.Cache[catalogapi.Product], error) {
				return cache.New(rdb, load, ccfg, log)
			}, ob, log, time.Now)
			if err != nil {
				return err
			}
			svc.Cache().SetBypass(cfg.CacheBypass)
			// Re-sends invalidations that failed while Redis was away and,
			// in the api role, keeps the near layer in step.
			ag.Add("cache", svc.Cache().Run)
		}
		if cfg.has("api") {
			apiMux := http.NewServeMux()
			producthttp.Routes(apiMux, svc, producthttp.Config{Authz: authz,
				Public: httpcache.Policy{MaxAge: cfg.PublicMaxAge, SMaxAge: cfg.PublicSMaxAge}}, log)
			api.Open(apiMux)
		}
		if cfg.has("relay") || cfg.has("invalidation") {
			nc, js, err := rt.ConnectNATS(ctx, cfg.NATSURL, health, stream.StreamConfig{Name: catalogapi.Stream, Partitions: cfg.Partitions})
			if err != nil {
				return service.Canceled(err)
			}
			defer nc.Close()
			if cfg.has("relay") {
				relay, err := rt.NewRelay(pool, js, catalogapi.Stream, cfg.Partitions)
				if err != nil {
					return err
				}
				ag.Add("relay", relay.Run)
			}
			if cfg.has("invalidation") {
				inv := &productstream.Invalidator{Cache: svc.Cache(), Warm: svc.Warm, Log: log}
				if len(cfg.CDNPurgeURLs) > 0 {
					inv.Purger = &productstream.Purger{URLs: cfg.CDNPurgeURLs}
				}
				grp, err := rt.NewGroup(js, catalogapi.Stream, productstream.Group, cfg.Partitions, inv.Handle)
				if err != nil {
					return err
				}
				ag.Add("invalidation", grp.Run)
			}
		}
		ag.Add("wait", func(ctx context.Context) error { <-ctx.Done(); return nil })
		return ag.Run(ctx)
	})
	g.Add("http", func(ctx context.Context) error {
		return rt.ServeMuxes(ctx, cfg.HTTP, lns, mux, health)
	})
	return g.Run(ctx)
}
