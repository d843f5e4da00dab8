package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/shopfloor/shopfloor/pkg/cache"
	"github.com/shopfloor/shopfloor/pkg/config"
	"github.com/shopfloor/shopfloor/pkg/httpcache"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/lifecycle"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/telemetry"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/catalog/internal/producthttp"
	"github.com/shopfloor/shopfloor/services/catalog/internal/productstream"
	"github.com/shopfloor/shopfloor/services/catalog/internal/productsvc"
	"github.com/shopfloor/shopfloor/services/catalog/migrations"
)

// Base is what every command needs: the database and telemetry.
type Base struct {
	DB             pgdb.Config
	ServiceVersion string     `env:"SERVICE_VERSION" envDefault:"dev"`
	InstanceID     string     `env:"INSTANCE_ID"`
	OTLPEndpoint   string     `env:"OTEL_EXPORTER_OTLP_ENDPOINT"`
	LogLevel       slog.Level `env:"LOG_LEVEL" envDefault:"INFO"`
}

// Config is the serve command's configuration, from the environment.
type Config struct {
	Base
	HTTPAddr        string        `env:"HTTP_ADDR" envDefault:":8081"`
	DrainDelay      time.Duration `env:"HTTP_DRAIN_DELAY" envDefault:"0s"`
	ShutdownTimeout time.Duration `env:"HTTP_SHUTDOWN_TIMEOUT" envDefault:"20s"`
	// RedisURL is the cache; catalog answers without it (slower).
	RedisURL string `env:"REDIS_URL" envDefault:"redis://127.0.0.1:6379/0"`
	// NATSURL is needed by the relay and invalidation roles.
	NATSURL    string `env:"NATS_URL"`
	Partitions int    `env:"CATALOG_PARTITIONS" envDefault:"8"`
	// AdminToken guards /v1/admin (at least 16 characters).
	AdminToken  string        `env:"ADMIN_TOKEN" secret:"true"`
	CacheBypass bool          `env:"CACHE_BYPASS" envDefault:"false"`
	CacheSoft   time.Duration `env:"CACHE_SOFT_TTL" envDefault:"5m"`
	CacheHard   time.Duration `env:"CACHE_HARD_TTL" envDefault:"1h"`
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
	var errs []error
	for _, r := range c.Roles {
		if !slices.Contains([]string{"api", "relay", "invalidation"}, r) {
			errs = append(errs, fmt.Errorf("ROLES: unknown role %q (known: api, relay, invalidation)", r))
		}
	}
	if slices.Contains(c.Roles, "api") && len(c.AdminToken) < 16 {
		errs = append(errs, errors.New("ADMIN_TOKEN: required by the api role, at least 16 characters"))
	}
	if (c.has("relay") || c.has("invalidation")) && c.NATSURL == "" {
		errs = append(errs, errors.New("NATS_URL: required by the relay and invalidation roles"))
	}
	if c.Partitions < 1 || c.Partitions > stream.MaxPartitions {
		errs = append(errs, fmt.Errorf("CATALOG_PARTITIONS: must be 1..%d (got %d)", stream.MaxPartitions, c.Partitions))
	}
	return errs
}

func (c Config) has(role string) bool { return slices.Contains(c.Roles, role) }

const usage = `usage: catalog [serve | migrate | seed --products N | dlq ...]`

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cmd := "serve"
	if len(args) > 1 {
		cmd = args[1]
	}
	switch cmd {
	case "serve", "migrate", "seed":
	case "dlq":
		return dlqCommand(ctx, args[min(2, len(args)):], getenv, stdout)
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
	} else if cfg.Base, err = config.Load[Base](getenv); err != nil {
		return err
	}
	tel, err := telemetry.New(ctx, telemetry.Config{
		ServiceName: "catalog", ServiceVersion: cfg.ServiceVersion, InstanceID: cfg.InstanceID,
		OTLPEndpoint: cfg.OTLPEndpoint, LogLevel: cfg.LogLevel,
	}, stdout)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	log := tel.Logger
	pgDep := lifecycle.NewDependency("postgres")
	openPG := func(ctx context.Context) (*pgxpool.Pool, error) {
		return lifecycle.Connect(ctx, log, pgDep, lifecycle.DefaultRetry, func(ctx context.Context) (*pgxpool.Pool, error) {
			return pgdb.Open(ctx, cfg.DB)
		})
	}
	switch cmd {
	case "migrate":
		pool, err := openPG(ctx)
		if err != nil {
			return err
		}
		defer pool.Close()
		applied, err := pgdb.Migrate(ctx, pool, migrations.FS, log)
		if err != nil {
			return err
		}
		log.InfoContext(ctx, "migrations applied", "versions", applied)
		return nil
	case "seed":
		pool, err := openPG(ctx)
		if err != nil {
			return err
		}
		defer pool.Close()
		start := time.Now()
		if err := productsvc.Seed(ctx, pool, outbox.New(catalogapi.Stream), seedN, time.Now); err != nil {
			return err
		}
		log.InfoContext(ctx, "seeded", "products", seedN, "took", time.Since(start).String())
		return nil
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	return serve(ctx, cfg, tel, ln, pgDep, openPG)
}

// serve runs the roles. HTTP starts at once (health answers while the
// database is being connected); API routes are mounted once it is up.
func serve(ctx context.Context, cfg Config, tel *telemetry.Telemetry, ln net.Listener, pgDep *lifecycle.Dependency,
	openPG func(context.Context) (*pgxpool.Pool, error)) error {
	log := tel.Logger
	health := httpkit.NewHealth()
	health.AddCheck("postgres", pgDep.Check)
	mux := httpkit.NewMux(health, tel.MetricsHandler())
	var api httpReady
	mux.Handle("/v1/", &api)

	g := lifecycle.NewGroup(log)
	g.Add("app", func(ctx context.Context) error {
		pool, err := openPG(ctx)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
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
			svc, err = productsvc.New(pool, func(load cache.Loader[catalogapi.Product]) (*cache.Cache[catalogapi.Product], error) {
				return cache.New(rdb, load, cache.Config{Class: "product", SoftTTL: cfg.CacheSoft, HardTTL: cfg.CacheHard, Registerer: tel.Registry}, log)
			}, ob, log, time.Now)
			if err != nil {
				return err
			}
			svc.Cache().SetBypass(cfg.CacheBypass)
		}
		if cfg.has("api") {
			apiMux := http.NewServeMux()
			producthttp.Routes(apiMux, svc, producthttp.Config{AdminToken: cfg.AdminToken,
				Public: httpcache.Policy{MaxAge: cfg.PublicMaxAge, SMaxAge: cfg.PublicSMaxAge}}, log)
			api.set(apiMux)
		}
		if cfg.has("relay") || cfg.has("invalidation") {
			natsDep := lifecycle.NewDependency("nats")
			health.AddCheck("nats", natsDep.Check)
			nc, err := lifecycle.Connect(ctx, log, natsDep, lifecycle.DefaultRetry, func(ctx context.Context) (*nats.Conn, error) {
				nc, err := nats.Connect(cfg.NATSURL, nats.Name("catalog"), nats.MaxReconnects(-1))
				if err != nil {
					return nil, err
				}
				js, err := jetstream.New(nc)
				if err == nil {
					err = stream.EnsureStream(ctx, js, stream.StreamConfig{Name: catalogapi.Stream, Partitions: cfg.Partitions})
				}
				if err != nil {
					nc.Close()
					return nil, err
				}
				return nc, nil
			})
			if err != nil {
				if errors.Is(err, context.Canceled) {
					return nil
				}
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			if cfg.has("relay") {
				pub, err := stream.NewPublisher(js, catalogapi.Stream, cfg.Partitions)
				if err != nil {
					return err
				}
				relay, err := outbox.NewRelay(pool, outbox.StreamSink{catalogapi.Stream: pub}, outbox.RelayConfig{Stream: catalogapi.Stream, Registerer: tel.Registry}, log)
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
				grp, err := stream.NewGroup(js, stream.GroupConfig{Stream: catalogapi.Stream, Name: productstream.Group,
					Partitions: cfg.Partitions, Extract: tel.Extract, Registerer: tel.Registry}, inv.Handle, log)
				if err != nil {
					return err
				}
				ag.Add("invalidation", grp.Run)
			}
		}
		ag.Add("wait", func(ctx context.Context) error { <-ctx.Done(); return nil })
		return ag.Run(ctx)
	})
	handler := httpkit.Chain(mux,
		httpkit.Trace(tel.TracerProvider, tel.Propagator, tel.MeterProvider),
		httpkit.AccessLog(log),
		httpkit.Recover(log),
		httpkit.LimitBody(httpkit.DefaultMaxBodyBytes),
	)
	g.Add("http", func(ctx context.Context) error {
		log.InfoContext(ctx, "http listening", "addr", ln.Addr().String())
		return httpkit.Serve(ctx, httpkit.ServerConfig{Addr: cfg.HTTPAddr, DrainDelay: cfg.DrainDelay, ShutdownTimeout: cfg.ShutdownTimeout}, ln, handler, health, log)
	})
	return g.Run(ctx)
}

// httpReady serves the API once it is mounted, and 503 with Retry-After
// until then (PostgreSQL not reachable yet).
type httpReady struct{ h atomic.Pointer[http.ServeMux] }

func (a *httpReady) set(m *http.ServeMux) { a.h.Store(m) }

func (a *httpReady) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if m := a.h.Load(); m != nil {
		m.ServeHTTP(w, r)
		return
	}
	p := httpkit.NewProblem(http.StatusServiceUnavailable, "not-ready", "catalog is connecting to its database")
	p.RetryAfter = time.Second
	httpkit.WriteProblem(w, p)
}

// dlqCommand is `catalog dlq ...`: the operator's tool for the dead letters
// of catalog's consumers (stream.DLQUsage).
func dlqCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	type dlqConfig struct {
		NATSURL string `env:"NATS_URL,required"`
	}
	cfg, err := config.Load[dlqConfig](getenv)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(cfg.NATSURL, nats.Name("catalog-dlq"))
	if err != nil {
		return fmt.Errorf("NATS_URL %s: %w", cfg.NATSURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	q, err := stream.NewDLQ(js, catalogapi.Stream, slog.New(slog.NewJSONHandler(stdout, nil)))
	if err != nil {
		return err
	}
	return stream.DLQCommand(ctx, q, args, stdout)
}
