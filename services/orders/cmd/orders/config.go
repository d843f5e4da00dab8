package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/pkg/stream"
)

// Config is the serve command's configuration, from the environment.
type Config struct {
	service.Base
	service.Serve
	// Partitions of the ORDERS stream (which orders creates) and of the
	// PAYMENTS stream (which payments creates; orders ensures it too, with
	// the same count, so either service may start first).
	OrdersPartitions   int `env:"ORDERS_PARTITIONS" envDefault:"8"`
	PaymentsPartitions int `env:"PAYMENTS_PARTITIONS" envDefault:"8"`
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
	// Retry-After (orderhttp.Config.CheckoutConnWait). 0: no bound.
	CheckoutConnWait time.Duration `env:"CHECKOUT_CONN_WAIT" envDefault:"1s"`
	// CheckoutRateLimit bounds each customer's checkouts (POST /v1/orders)
	// beyond the API's per-principal limit (RATE_LIMIT_PRINCIPAL):
	// CHECKOUT_RATE_LIMIT a second with bursts of CHECKOUT_RATE_LIMIT_BURST,
	// per process; past it 429 with Retry-After. It slows card testing (a
	// stolen card tried order after order) and never meets a person
	// shopping: default one checkout every 5 s (0.2) after a burst of 5.
	// 0 turns it off.
	CheckoutRateLimit      float64 `env:"CHECKOUT_RATE_LIMIT" envDefault:"0.2"`
	CheckoutRateLimitBurst int     `env:"CHECKOUT_RATE_LIMIT_BURST" envDefault:"5"`
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
}

// Validate reports rules beyond one value's syntax.
func (c Config) Validate() []error {
	var errs []error
	if c.Has("api") && c.CatalogURL == "" {
		errs = append(errs, errors.New("CATALOG_URL: required by the api role (catalog's base URL, e.g. http://127.0.0.1:8081)"))
	}
	if c.Has("api") {
		errs = append(errs, c.Client.Validate()...)
	}
	if c.Has("consumer") {
		if c.PaymentsURL == "" {
			errs = append(errs, errors.New("PAYMENTS_URL: required by the consumer role (payments' base URL, for the stuck-order repair, e.g. http://127.0.0.1:8083)"))
		}
		if !c.Has("api") {
			errs = append(errs, c.Client.Validate()...)
		}
		if c.StuckAfter < time.Second {
			errs = append(errs, fmt.Errorf("ORDERS_STUCK_AFTER: must be at least 1s (got %s)", c.StuckAfter))
		}
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
	if c.CheckoutRateLimit < 0 {
		errs = append(errs, fmt.Errorf("CHECKOUT_RATE_LIMIT: must be positive, or 0 to turn the limit off (got %v)", c.CheckoutRateLimit))
	}
	if c.CheckoutRateLimit > 0 && c.CheckoutRateLimitBurst < 1 {
		errs = append(errs, fmt.Errorf("CHECKOUT_RATE_LIMIT_BURST: must be at least 1 (got %d)", c.CheckoutRateLimitBurst))
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
