package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/idempotency"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/ratelimit"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/orders/internal/orderhttp"
	"github.com/shopfloor/shopfloor/services/orders/internal/orderstream"
	"github.com/shopfloor/shopfloor/services/orders/internal/ordersvc"
	"github.com/shopfloor/shopfloor/services/orders/internal/overload"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// wire builds the roles on the connected database: the use case, then
// the api role's routes and the stream roles.
func wire(ctx context.Context, app *service.App, cfg *Config) error {
	var catalog *catalogapi.Client
	if app.Has(service.RoleAPI) {
		var err error
		if catalog, err = catalogClient(app, cfg); err != nil {
			return err
		}
	}
	svc, err := ordersvc.New(app.Pool, catalog, outbox.New(ordersapi.Stream, outbox.WithTraceInjector(app.Tel.Inject)), time.Now)
	if err != nil {
		return err
	}
	if app.Has(service.RoleAPI) {
		if err := wireAPI(app, cfg, svc); err != nil {
			return err
		}
	}
	if !app.HasAny(service.RoleRelay, service.RoleConsumer) {
		return nil
	}
	streams := service.Streams{Own: []stream.StreamConfig{{Name: ordersapi.Stream, Partitions: cfg.OrdersPartitions}}}
	if app.Has(service.RoleConsumer) {
		streams.Read = []stream.StreamConfig{{Name: paymentsapi.Stream, Partitions: cfg.PaymentsPartitions}}
	}
	broker, err := app.ConnectStreams(ctx, streams)
	if err != nil {
		return err
	}
	if app.Has(service.RoleRelay) {
		relay, err := app.NewRelay(app.Pool, broker, ordersapi.Stream, cfg.OrdersPartitions)
		if err != nil {
			return err
		}
		app.Go("relay", relay.Run)
	}
	if app.Has(service.RoleConsumer) {
		return wireConsumer(app, cfg, svc, broker)
	}
	return nil
}

// catalogClient is the api role's way to price a checkout: catalog's
// batch read with a client-credentials token, retries and a breaker.
func catalogClient(app *service.App, cfg *Config) (*catalogapi.Client, error) {
	toCatalog, err := app.NewServiceTransport(cfg.Client, catalogapi.Audience)
	if err != nil {
		return nil, err
	}
	c, err := catalogapi.NewClient(catalogapi.ClientConfig{BaseURL: cfg.CatalogURL, Timeout: cfg.CatalogTimeout,
		Attempts: cfg.CatalogAttempts, BreakerFailures: cfg.CatalogBreakerFailures, BreakerOpenFor: cfg.CatalogBreakerOpenFor,
		HTTPClient: &http.Client{Transport: toCatalog}, Registerer: app.Tel.Registry, Name: "orders"})
	if err != nil {
		return nil, fmt.Errorf("CATALOG_URL: %w", err)
	}
	return c, nil
}

// wireAPI mounts the API behind the in-flight limit, with idempotency
// keys and the checkout's three refusals (per-customer rate limit,
// connection wait, backlog shedding), and prunes expired keys.
func wireAPI(app *service.App, cfg *Config, svc *ordersvc.Service) error {
	store, err := idempotency.New(idempotency.Config{Retention: cfg.IdempotencyRetention,
		StoredHeaders: orderhttp.StoredHeaders(), Registerer: app.Tel.Registry, Logger: app.Log})
	if err != nil {
		return err
	}
	routes := orderhttp.Config{Authz: app.Authz, Log: app.Log, Idempotency: store,
		CheckoutConnWait: cfg.CheckoutConnWait, Registerer: app.Tel.Registry}
	if cfg.CheckoutRateLimit > 0 {
		limit, err := ratelimit.New(ratelimit.Config{Policy: "checkout", MaxKeys: cfg.RateLimit.MaxKeys, Registerer: app.Tel.Registry,
			Limit: ratelimit.Limit{Rate: cfg.CheckoutRateLimit, Burst: cfg.CheckoutRateLimitBurst}})
		if err != nil {
			return fmt.Errorf("CHECKOUT_RATE_LIMIT: %w", err)
		}
		routes.CheckoutLimit = limit.Middleware("POST /v1/orders", ratelimit.ByPrincipal)
	}
	if cfg.ShedPaymentsBacklogAge > 0 {
		shed, err := shedder(app, cfg)
		if err != nil {
			return err
		}
		routes.CheckoutShedder = shed.Except
	}
	mux := http.NewServeMux()
	orderhttp.Routes(mux, svc, routes)
	app.OpenAPI(httpkit.LimitInFlight(httpkit.InFlightLimit{Max: cfg.MaxInFlight, Wait: cfg.InFlightWait,
		Registerer: app.Tel.Registry, Name: "orders-api"})(mux))
	app.Every("prune-idempotency-keys", time.Minute, func(ctx context.Context) error {
		n, err := store.Prune(ctx, app.Pool, 1000)
		if n > 0 {
			app.Log.InfoContext(ctx, "pruned idempotency keys", "rows", n)
		}
		return err
	})
	return nil
}

// shedder samples how far behind the payment pipeline is (ADR 0028):
// orders pending payment and, with NATS_URL on the NATS engine, the lag
// of the two groups (on Kafka the pending orders alone: ADR 0046).
func shedder(app *service.App, cfg *Config) (*overload.Shedder, error) {
	signals := []overload.Signal{overload.PendingOrders(app.Pool, overload.PendingOrdersSkip)}
	if cfg.NATS.URL != "" && !cfg.StreamEngine.Kafka() {
		nc, js, err := overload.Dial(cfg.NATS, "orders-shedder")
		if err != nil {
			return nil, err
		}
		app.Defer(nc.Close)
		signals = append(signals, overload.PaymentPipeline(js)...)
	}
	s, err := overload.New(overload.Config{Threshold: cfg.ShedPaymentsBacklogAge, Registerer: app.Tel.Registry, Logger: app.Log}, signals...)
	if err != nil {
		return nil, err
	}
	app.Go("shed-sampler", s.Run)
	return s, nil
}

// wireConsumer is the consumer role: PAYMENTS into order states, the
// stuck-order repair (asks payments about orders pending too long) and
// the inbox's pruning.
func wireConsumer(app *service.App, cfg *Config, svc *ordersvc.Service, broker *service.Broker) error {
	metrics, err := orderstream.NewMetrics(app.Tel.Registry)
	if err != nil {
		return err
	}
	h := &orderstream.Payments{Pool: app.Pool, Applier: svc, Log: app.Log, Metrics: metrics}
	grp, err := app.NewBatchGroup(broker, paymentsapi.Stream, orderstream.Group, cfg.PaymentsPartitions, h.HandleBatch)
	if err != nil {
		return err
	}
	app.Go("payments-consumer", grp.Run)
	toPayments, err := app.NewServiceTransport(cfg.Client, paymentsapi.Audience)
	if err != nil {
		return err
	}
	payments, err := paymentsapi.NewClient(cfg.PaymentsURL, &http.Client{Transport: toPayments, Timeout: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("PAYMENTS_URL: %w", err)
	}
	repair, err := svc.NewRepairer(payments, ordersvc.RepairConfig{StuckAfter: cfg.StuckAfter}, app.Log, app.Tel.Registry)
	if err != nil {
		return err
	}
	app.Go("stuck-order-repair", repair.Run)
	app.Go("prune-inbox", app.PruneInbox(app.Pool))
	return nil
}
