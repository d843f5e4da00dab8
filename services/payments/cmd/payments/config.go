package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/payments/internal/payment"
)

// Config is the serve command's configuration, from the environment.
type Config struct {
	service.Base
	service.Serve
	OrdersPartitions   int `env:"ORDERS_PARTITIONS" envDefault:"8"`
	PaymentsPartitions int `env:"PAYMENTS_PARTITIONS" envDefault:"8"`
	// PSPURL is the payment provider, needed by the worker role.
	PSPURL     string        `env:"PSP_URL"`
	PSPTimeout time.Duration `env:"PSP_TIMEOUT" envDefault:"5s"`
	// The provider's circuit breaker (pkg/breaker): open after this many
	// outage errors in a row (5xx, timeouts, 429s; not declines), then the
	// charge and refund workers receive nothing for the cool-down (doubling
	// per failed probe, up to 1m) and the jobs wait in their queues.
	PSPBreakerFailures int           `env:"PSP_BREAKER_FAILURES" envDefault:"5"`
	PSPBreakerCoolDown time.Duration `env:"PSP_BREAKER_COOL_DOWN" envDefault:"5s"`
	// DefaultPaymentMethod charges orders placed without a token.
	DefaultPaymentMethod string `env:"DEFAULT_PAYMENT_METHOD" envDefault:"tok_visa"`
	// The queues' redrive policy and the workers (WORKER_CONCURRENCY
	// defaults to 8 here: Program.Defaults).
	service.Jobs
	// The reconciler (worker role): charges whose outcome stayed unknown
	// are looked up with the provider RECONCILE_GRACE after the worker gave
	// them up, and every payment pending longer than
	// RECONCILE_PENDING_BOUND; lookups run every RECONCILE_INTERVAL.
	ReconcileInterval     time.Duration `env:"RECONCILE_INTERVAL" envDefault:"5s"`
	ReconcileGrace        time.Duration `env:"RECONCILE_GRACE" envDefault:"1m"`
	ReconcilePendingBound time.Duration `env:"RECONCILE_PENDING_BOUND" envDefault:"10m"`
	// RefundRetryMax caps the backoff between refund attempts: a refund
	// is retried until done or abandoned by an operator.
	RefundRetryMax time.Duration `env:"REFUND_RETRY_MAX" envDefault:"10m"`
	// IdempotencyRetention is how long an Idempotency-Key is remembered.
	IdempotencyRetention time.Duration `env:"IDEMPOTENCY_RETENTION" envDefault:"24h"`
}

// Validate reports rules beyond one value's syntax.
func (c Config) Validate() []error {
	var errs []error
	if c.Has("worker") && c.PSPURL == "" {
		errs = append(errs, errors.New("PSP_URL: required by the worker role (the provider, e.g. http://127.0.0.1:8099)"))
	}
	for name, n := range map[string]int{"ORDERS_PARTITIONS": c.OrdersPartitions, "PAYMENTS_PARTITIONS": c.PaymentsPartitions} {
		if err := stream.CheckPartitions(name, n); err != nil {
			errs = append(errs, err)
		}
	}
	if !payment.ValidToken(c.DefaultPaymentMethod) {
		errs = append(errs, errors.New("DEFAULT_PAYMENT_METHOD: must be a provider token such as tok_visa"))
	}
	errs = append(errs, c.CheckJobs()...)
	if c.PSPBreakerFailures < 1 || c.PSPBreakerCoolDown <= 0 {
		errs = append(errs, fmt.Errorf("PSP_BREAKER_FAILURES, PSP_BREAKER_COOL_DOWN: need at least 1 failure and a positive cool-down (got %d, %s)", c.PSPBreakerFailures, c.PSPBreakerCoolDown))
	}
	if c.ReconcileInterval < 100*time.Millisecond || c.ReconcileGrace < c.ReconcileInterval || c.ReconcilePendingBound < c.ReconcileGrace {
		errs = append(errs, errors.New("RECONCILE_INTERVAL, RECONCILE_GRACE, RECONCILE_PENDING_BOUND: need 100ms <= interval <= grace <= pending bound"))
	}
	if c.RefundRetryMax < time.Second {
		errs = append(errs, fmt.Errorf("REFUND_RETRY_MAX: must be at least 1s (got %s)", c.RefundRetryMax))
	}
	if c.IdempotencyRetention < time.Hour {
		errs = append(errs, fmt.Errorf("IDEMPOTENCY_RETENTION: must be at least 1h (got %s)", c.IdempotencyRetention))
	}
	return errs
}
