package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/config"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/idempotency"
	"github.com/shopfloor/shopfloor/pkg/lifecycle"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/orders/internal/orderhttp"
	"github.com/shopfloor/shopfloor/services/orders/internal/orderstream"
	"github.com/shopfloor/shopfloor/services/orders/internal/ordersvc"
	"github.com/shopfloor/shopfloor/services/orders/internal/overload"
	"github.com/shopfloor/shopfloor/services/orders/migrations"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// Config is the serve command's configuration, from the environment.
type Config struct {
	service.Base
	service.HTTP
	HTTPAddr string `env:"HTTP_ADDR" envDefault:":8082"`
	// AdminAddr is the admin listener: /metrics and /readyz details. Never publish it (ADR 0023).
	AdminAddr string `env:"ADMIN_ADDR" envDefault:":9082"`
	// NATSURL is needed by the relay and consumer roles.
	NATSURL string `env:"NATS_URL"`
	// Partitions of the ORDERS stream (which orders creates) and of the
	// PAYMENTS stream (which payments creates; orders ensures it too, with
	// the same count, so either service may start first).
	OrdersPartitions   int `env:"ORDERS_PARTITIONS" envDefault:"8"`
	PaymentsPartitions int `env:"PAYMENTS_PARTITIONS" envDefault:"8"`
	// Auth is the identity provider whose access tokens the API accepts
	// (AUTH_ISSUER, AUTH_AUDIENCE default "orders", AUTH_ROLES_CLAIM).
	Auth auth.Config
	// Client is orders' own client at the provider, for client-credentials
	// tokens to catalog and payments (AUTH_CLIENT_ID, AUTH_CLIENT_SECRET;
	// required by the api and consumer roles, no defaults).
	Client auth.ClientConfig
	// PaymentsURL is payments' API, where the consumer role's stuck-order
	// repair reads the payment of an order pending_payment for longer than
	// StuckAfter (ordersvc.Repairer).
	PaymentsURL string        `env:"PAYMENTS_URL"`
	StuckAfter  time.Duration `env:"ORDERS_STUCK_AFTER" envDefault:"15m"`
	// CatalogURL is catalog's API, where the api role prices orders.
	CatalogURL      string        `env:"CATALOG_URL"`
	CatalogTimeout  time.Duration `env:"CATALOG_TIMEOUT" envDefault:"2s"`
	CatalogAttempts int           `env:"CATALOG_ATTEMPTS" envDefault:"3"`
	// The catalog circuit breaker opens after this many consecutive
	// failures and stays open this long.
	CatalogBreakerFailures int           `env:"CATALOG_BREAKER_FAILURES" envDefault:"5"`
	CatalogBreakerOpenFor  time.Duration `env:"CATALOG_BREAKER_OPEN_FOR" envDefault:"5s"`
	// MaxInFlight bounds concurrent API requests; beyond it a request waits
	// up to InFlightWait, then gets 503 with Retry-After.
	MaxInFlight  int           `env:"MAX_IN_FLIGHT" envDefault:"64"`
	InFlightWait time.Duration `env:"IN_FLIGHT_WAIT" envDefault:"50ms"`
	// CheckoutConnWait bounds a priced checkout's wait for a database
	// connection; past it the checkout is answered 503 busy with
	// Retry-After (orderhttp.WithCheckoutConnWait). 0: no bound.
	CheckoutConnWait time.Duration `env:"CHECKOUT_CONN_WAIT" envDefault:"1s"`
	// IdempotencyRetention is how long an Idempotency-Key is remembered.
	IdempotencyRetention time.Duration `env:"IDEMPOTENCY_RETENTION" envDefault:"24h"`
	// ShedPaymentsBacklogAge: the api role answers checkouts 503 with
	// Retry-After while the payment pipeline is behind by more than this
	// (orders pending payment that long, beyond a few stragglers; with
	// NATS_URL also payments' group on ORDERS and orders' on PAYMENTS),
	// until it is below half of it (internal/overload, ADR 0028). 0 turns
	// shedding off. Default 15s: half the created→paid SLO (30 s,
	// docs/slo.md), so shedding holds the pipeline inside it.
	ShedPaymentsBacklogAge time.Duration `env:"SHED_PAYMENTS_BACKLOG_AGE" envDefault:"15s"`
	// Roles: api, relay, consumer (of PAYMENTS).
	Roles []string `env:"ROLES" envDefault:"api,relay,consumer"`
}

// Validate reports rules beyond one value's syntax.
func (c Config) Validate() []error {
	errs := service.CheckRoles(c.Roles, []string{"api", "relay", "consumer"})
	if c.has("api") && c.CatalogURL == "" {
		errs = append(errs, errors.New("CATALOG_URL: required by the api role (catalog's base URL, e.g. http://127.0.0.1:8081)"))
	}
	if c.has("api") {
		errs = append(errs, c.Auth.Validate()...)
		errs = append(errs, c.Client.Validate()...)
	}
	if c.has("consumer") {
		if c.PaymentsURL == "" {
			errs = append(errs, errors.New("PAYMENTS_URL: required by the consumer role (payments' base URL, for the stuck-order repair, e.g. http://127.0.0.1:8083)"))
		}
		if !c.has("api") {
			errs = append(errs, c.Client.Validate()...)
		}
		if c.StuckAfter < time.Second {
			errs = append(errs, fmt.Errorf("ORDERS_STUCK_AFTER: must be at least 1s (got %s)", c.StuckAfter))
		}
	}
	if (c.has("relay") || c.has("consumer")) && c.NATSURL == "" {
		errs = append(errs, errors.New("NATS_URL: required by the relay and consumer roles"))
	}
	for name, n := range map[string]int{"ORDERS_PARTITIONS": c.OrdersPartitions, "PAYMENTS_PARTITIONS": c.PaymentsPartitions} {
		if err := stream.CheckPartitions(name, n); err != nil {
			errs = append(errs, err)
		}
	}
	if c.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("MAX_IN_FLIGHT: must be at least 1 (got %d)", c.MaxInFlight))
	}
	if c.CatalogAttempts < 1 || c.CatalogAttempts > 10 {
		errs = append(errs, fmt.Errorf("CATALOG_ATTEMPTS: must be 1..10 (got %d)", c.CatalogAttempts))
	}
	if c.CheckoutConnWait < 0 {
		errs = append(errs, fmt.Errorf("CHECKOUT_CONN_WAIT: must be positive, or 0 for no bound (got %s)", c.CheckoutConnWait))
	}
	if c.ShedPaymentsBacklogAge < 0 {
		errs = append(errs, fmt.Errorf("SHED_PAYMENTS_BACKLOG_AGE: must be positive, or 0 to turn shedding off (got %s)", c.ShedPaymentsBacklogAge))
	}
	if c.IdempotencyRetention < time.Hour {
		errs = append(errs, fmt.Errorf("IDEMPOTENCY_RETENTION: must be at least 1h (got %s); clients retry for longer than that", c.IdempotencyRetention))
	}
	return errs
}

func (c Config) has(role string) bool { return slices.Contains(c.Roles, role) }

const usage = `usage: orders [serve | migrate | outbox ... | audit ... | dlq ...]`

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cmd := "serve"
	if len(args) > 1 {
		cmd = args[1]
	}
	var (
		cfg Config
		err error
	)
	switch cmd {
	case "serve":
		cfg, err = config.Load[Config](getenv)
	case "migrate", "outbox", "audit":
		cfg.Base, err = config.Load[service.Base](getenv)
	case "dlq":
		return service.DLQCommand(ctx, "orders", paymentsapi.Stream, args[min(2, len(args)):], getenv, stdout)
	default:
		return fmt.Errorf("unknown command %q (%s)", cmd, usage)
	}
	if err != nil {
		return err
	}
	rt, err := service.Start(ctx, "orders", cfg.Base, stdout)
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
	}
	lns, err := service.Listen(cfg.HTTPAddr, cfg.AdminAddr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, rt, lns)
}

// serve runs the roles. HTTP starts at once (health answers while the
// dependencies are being connected); API routes are mounted once
// PostgreSQL is up.
func serve(ctx context.Context, cfg Config, rt *service.Runtime, lns service.Listeners) error {
	log, tel := rt.Log, rt.Tel
	health := httpkit.NewHealth()
	health.AddCheck("postgres", rt.PG.Check)
	if cfg.has("relay") || cfg.has("consumer") {
		rt.RequireNATS(health)
	}
	// No admin API: the admin listener serves metrics and readiness details.
	mux := rt.NewMuxes(health)
	api := service.NewGate("orders")
	authz, err := rt.APIVerifier(cfg.Auth, cfg.has("api"), health)
	if err != nil {
		return err
	}
	mux.Public.Handle("/v1/", httpkit.LimitInFlight(httpkit.InFlightLimit{Max: cfg.MaxInFlight, Wait: cfg.InFlightWait,
		Registerer: tel.Registry, Name: "orders-api"})(api))

	g := lifecycle.NewGroup(log)
	g.Add("app", func(ctx context.Context) error {
		pool, err := rt.OpenPG(ctx)
		if err != nil {
			return service.Canceled(err)
		}
		defer pool.Close()
		ob := outbox.New(ordersapi.Stream, outbox.WithTraceInjector(tel.Inject))
		var catalog *catalogapi.Client
		if cfg.has("api") {
			toCatalog, err := rt.NewServiceTransport(cfg.Client, catalogapi.Audience)
			if err != nil {
				return err
			}
			catalog, err = catalogapi.NewClient(catalogapi.ClientConfig{BaseURL: cfg.CatalogURL, Timeout: cfg.CatalogTimeout,
				Attempts: cfg.CatalogAttempts, BreakerFailures: cfg.CatalogBreakerFailures, BreakerOpenFor: cfg.CatalogBreakerOpenFor,
				HTTPClient: &http.Client{Transport: toCatalog}, Registerer: tel.Registry, Name: "orders"})
			if err != nil {
				return fmt.Errorf("CATALOG_URL: %w", err)
			}
		}
		svc, err := ordersvc.New(pool, catalog, ob, time.Now)
		if err != nil {
			return err
		}
		ag := lifecycle.NewGroup(log)
		if cfg.has("api") {
			store, err := idempotency.New(idempotency.Config{Retention: cfg.IdempotencyRetention,
				StoredHeaders: orderhttp.StoredHeaders(), Registerer: tel.Registry, Logger: log})
			if err != nil {
				return err
			}
			routeOpts := []orderhttp.Option{orderhttp.WithCheckoutConnWait(cfg.CheckoutConnWait, tel.Registry)}
			if cfg.ShedPaymentsBacklogAge > 0 {
				signals := []overload.Signal{overload.PendingOrders(pool, overload.PendingOrdersSkip)}
				if cfg.NATSURL != "" {
					nc, js, err := overload.Dial(cfg.NATSURL, "orders-shedder")
					if err != nil {
						return err
					}
					defer nc.Close()
					signals = append(signals, overload.PaymentPipeline(js)...)
				}
				shedder, err := overload.New(overload.Config{Threshold: cfg.ShedPaymentsBacklogAge, Registerer: tel.Registry, Logger: log}, signals...)
				if err != nil {
					return err
				}
				routeOpts = append(routeOpts, orderhttp.WithCheckoutShedder(shedder.Except))
				ag.Add("shed-sampler", shedder.Run)
			}
			apiMux := http.NewServeMux()
			orderhttp.Routes(apiMux, svc, store, authz, log, routeOpts...)
			api.Open(apiMux)
			ag.Add("prune-idempotency-keys", func(ctx context.Context) error {
				return service.Every(ctx, time.Minute, func(ctx context.Context) error {
					n, err := store.Prune(ctx, pool, 1000)
					if n > 0 {
						log.InfoContext(ctx, "pruned idempotency keys", "rows", n)
					}
					return err
				}, log)
			})
		}
		if cfg.has("relay") || cfg.has("consumer") {
			nc, js, err := rt.ConnectNATS(ctx, cfg.NATSURL, health,
				stream.StreamConfig{Name: ordersapi.Stream, Partitions: cfg.OrdersPartitions},
				stream.StreamConfig{Name: paymentsapi.Stream, Partitions: cfg.PaymentsPartitions})
			if err != nil {
				return service.Canceled(err)
			}
			defer nc.Close()
			if cfg.has("relay") {
				relay, err := rt.NewRelay(pool, js, ordersapi.Stream, cfg.OrdersPartitions)
				if err != nil {
					return err
				}
				ag.Add("relay", relay.Run)
			}
			if cfg.has("consumer") {
				metrics, err := orderstream.NewMetrics(tel.Registry)
				if err != nil {
					return err
				}
				h := &orderstream.Payments{Pool: pool, Applier: svc, Log: log, Metrics: metrics}
				grp, err := rt.NewGroup(js, paymentsapi.Stream, orderstream.Group, cfg.PaymentsPartitions, h.Handle)
				if err != nil {
					return err
				}
				ag.Add("payments-consumer", grp.Run)
				toPayments, err := rt.NewServiceTransport(cfg.Client, paymentsapi.Audience)
				if err != nil {
					return err
				}
				payments, err := paymentsapi.NewClient(cfg.PaymentsURL, &http.Client{Transport: toPayments, Timeout: 10 * time.Second})
				if err != nil {
					return fmt.Errorf("PAYMENTS_URL: %w", err)
				}
				repair, err := svc.NewRepairer(payments, ordersvc.RepairConfig{StuckAfter: cfg.StuckAfter}, log, tel.Registry)
				if err != nil {
					return err
				}
				ag.Add("stuck-order-repair", repair.Run)
				ag.Add("prune-inbox", rt.PruneInbox(pool))
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
