package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/breaker"
	"github.com/shopfloor/shopfloor/pkg/config"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/idempotency"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/lifecycle"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/telemetry"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/internal/payment"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymenthttp"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentstream"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentsvc"
	"github.com/shopfloor/shopfloor/services/payments/internal/psp"
	"github.com/shopfloor/shopfloor/services/payments/migrations"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
	"github.com/shopfloor/shopfloor/services/payments/pspsim"
)

// Config is the serve command's configuration, from the environment.
type Config struct {
	service.Base
	service.HTTP
	HTTPAddr string `env:"HTTP_ADDR" envDefault:":8083"`
	// AdminAddr is the admin listener: /metrics, /readyz details and /v1/admin. Never publish it (ADR 0023).
	AdminAddr string `env:"ADMIN_ADDR" envDefault:":9083"`
	// Auth is the identity provider whose access tokens the api role
	// accepts (AUTH_ISSUER, required by the api role; AUTH_AUDIENCE
	// default "payments"; AUTH_ROLES_CLAIM).
	Auth auth.Config
	// NATSURL is needed by the relay and consumer roles.
	NATSURL            string `env:"NATS_URL"`
	OrdersPartitions   int    `env:"ORDERS_PARTITIONS" envDefault:"8"`
	PaymentsPartitions int    `env:"PAYMENTS_PARTITIONS" envDefault:"8"`
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
	// The queues' redrive policy and the worker.
	MaxReceives       int           `env:"MAX_RECEIVES" envDefault:"10"`
	VisibilityTimeout time.Duration `env:"VISIBILITY_TIMEOUT" envDefault:"30s"`
	WorkerConcurrency int           `env:"WORKER_CONCURRENCY" envDefault:"8"`
	RetryInitial      time.Duration `env:"RETRY_INITIAL" envDefault:"1s"`
	RetryMax          time.Duration `env:"RETRY_MAX" envDefault:"5m"`
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
	// JobqueueAsyncAcks commits receives and deletes without waiting for
	// the WAL flush (jobqueue.Options.AsyncAcks, ADR 0018).
	JobqueueAsyncAcks bool `env:"JOBQUEUE_ASYNC_ACKS" envDefault:"false"`
	// IdempotencyRetention is how long an Idempotency-Key is remembered.
	IdempotencyRetention time.Duration `env:"IDEMPOTENCY_RETENTION" envDefault:"24h"`
	// Roles: api, worker, relay, consumer (of ORDERS).
	Roles []string `env:"ROLES" envDefault:"api,worker,relay,consumer"`
}

// Validate reports rules beyond one value's syntax.
func (c Config) Validate() []error {
	errs := service.CheckRoles(c.Roles, []string{"api", "worker", "relay", "consumer"})
	if c.has("api") {
		errs = append(errs, c.Auth.Validate()...)
	}
	if c.has("worker") && c.PSPURL == "" {
		errs = append(errs, errors.New("PSP_URL: required by the worker role (the provider, e.g. http://127.0.0.1:8099)"))
	}
	if (c.has("relay") || c.has("consumer")) && c.NATSURL == "" {
		errs = append(errs, errors.New("NATS_URL: required by the relay and consumer roles"))
	}
	for name, n := range map[string]int{"ORDERS_PARTITIONS": c.OrdersPartitions, "PAYMENTS_PARTITIONS": c.PaymentsPartitions} {
		if err := stream.CheckPartitions(name, n); err != nil {
			errs = append(errs, err)
		}
	}
	if !payment.ValidToken(c.DefaultPaymentMethod) {
		errs = append(errs, errors.New("DEFAULT_PAYMENT_METHOD: must be a provider token such as tok_visa"))
	}
	if c.MaxReceives < 1 || c.MaxReceives > 100 {
		errs = append(errs, fmt.Errorf("MAX_RECEIVES: must be 1..100 (got %d)", c.MaxReceives))
	}
	if c.PSPBreakerFailures < 1 || c.PSPBreakerCoolDown <= 0 {
		errs = append(errs, fmt.Errorf("PSP_BREAKER_FAILURES, PSP_BREAKER_COOL_DOWN: need at least 1 failure and a positive cool-down (got %d, %s)", c.PSPBreakerFailures, c.PSPBreakerCoolDown))
	}
	if c.WorkerConcurrency < 1 {
		errs = append(errs, fmt.Errorf("WORKER_CONCURRENCY: must be at least 1 (got %d)", c.WorkerConcurrency))
	}
	if c.RetryInitial <= 0 || c.RetryMax < c.RetryInitial {
		errs = append(errs, errors.New("RETRY_INITIAL, RETRY_MAX: need 0 < RETRY_INITIAL <= RETRY_MAX"))
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

func (c Config) has(role string) bool { return slices.Contains(c.Roles, role) }

const usage = `usage: payments [serve | migrate | psp-sim | queue ... | refund ... | audit ... | outbox ... | stream-dlq ...]`

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cmd := "serve"
	if len(args) > 1 {
		cmd = args[1]
	}
	rest := args[min(2, len(args)):]
	var (
		cfg Config
		err error
	)
	switch cmd {
	case "serve":
		cfg, err = config.Load[Config](getenv)
	case "migrate", "queue", "refund", "audit", "outbox":
		cfg.Base, err = config.Load[service.Base](getenv)
	case "psp-sim":
		return pspSim(ctx, getenv, stdout)
	case "stream-dlq":
		return service.DLQCommand(ctx, "payments", ordersapi.Stream, rest, getenv, stdout)
	default:
		return fmt.Errorf("unknown command %q (%s)", cmd, usage)
	}
	if err != nil {
		return err
	}
	rt, err := service.Start(ctx, "payments", cfg.Base, stdout)
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	switch cmd {
	case "migrate":
		return rt.Migrate(ctx, migrations.FS)
	case "queue":
		return rt.QueueCommand(ctx, redaction(), rest, stdout)
	case "refund":
		return refundCommand(ctx, rt, rest, stdout)
	case "audit":
		return rt.AuditCommand(ctx, rest, stdout)
	case "outbox":
		return rt.OutboxCommand(ctx, rest, stdout)
	}
	lns, err := service.Listen(cfg.HTTPAddr, cfg.AdminAddr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, rt, lns)
}

func redaction() map[string]func([]byte) []byte {
	return map[string]func([]byte) []byte{
		paymentsvc.ChargeQueue: paymentsvc.Redact, paymentsvc.ChargeDLQ: paymentsvc.Redact,
		paymentsvc.RefundQueue: paymentsvc.Redact, paymentsvc.RefundDLQ: paymentsvc.Redact,
	}
}

// serve runs the roles. HTTP starts at once; API routes are mounted once
// PostgreSQL is up.
func serve(ctx context.Context, cfg Config, rt *service.Runtime, lns service.Listeners) error {
	log, tel := rt.Log, rt.Tel
	health := httpkit.NewHealth()
	health.AddCheck("postgres", rt.PG.Check)
	if cfg.has("relay") || cfg.has("consumer") {
		rt.RequireNATS(health)
	}
	mux := rt.NewMuxes(health)
	api := service.NewGate("payments")
	authz, err := rt.APIVerifier(cfg.Auth, cfg.has("api"), health)
	if err != nil {
		return err
	}
	mux.Public.Handle("/v1/", api)
	// The admin API (paymenthttp's /v1/admin/queues, for operators) is served
	// on the admin listener only; the public one answers 404 for it.
	mux.Admin.Handle(httpkit.AdminPrefix, api)

	g := lifecycle.NewGroup(log)
	g.Add("app", func(ctx context.Context) error {
		pool, err := rt.OpenPG(ctx)
		if err != nil {
			return service.Canceled(err)
		}
		defer pool.Close()
		jobs, err := jobqueue.New(pool, jobqueue.Options{Logger: log, Registerer: tel.Registry, Redact: redaction(), AsyncAcks: cfg.JobqueueAsyncAcks})
		if err != nil {
			return err
		}
		defer jobs.Close()
		if err := tel.Registry.Register(jobs.NewCollector()); err != nil {
			return fmt.Errorf("job queue metrics: %w", err)
		}
		var (
			provider   paymentsvc.Provider
			pspBreaker *breaker.Breaker
		)
		if cfg.has("worker") {
			c, err := psp.New(psp.Config{BaseURL: cfg.PSPURL, Timeout: cfg.PSPTimeout, HTTPClient: &http.Client{Transport: tel.HTTPTransport(nil)}})
			if err != nil {
				return fmt.Errorf("PSP_URL: %w", err)
			}
			pspBreaker, err = breaker.New(breaker.Config{Name: "psp", Failures: cfg.PSPBreakerFailures, CoolDown: cfg.PSPBreakerCoolDown,
				Registerer: tel.Registry, Logger: log})
			if err != nil {
				return err
			}
			provider = psp.NewGuarded(c, pspBreaker)
		}
		svc, err := paymentsvc.New(pool, jobs, outbox.New(paymentsapi.Stream, outbox.WithTraceInjector(tel.Inject)), provider,
			paymentsvc.Config{MaxReceives: cfg.MaxReceives, VisibilityTimeout: cfg.VisibilityTimeout, ReconcileGrace: cfg.ReconcileGrace,
				RefundRetryMax: cfg.RefundRetryMax, Registerer: tel.Registry, Inject: tel.Inject}, log, time.Now)
		if err != nil {
			return err
		}
		if err := svc.CreateQueues(ctx); err != nil {
			return err
		}
		ag := lifecycle.NewGroup(log)
		if cfg.has("api") {
			store, err := idempotency.New(idempotency.Config{Retention: cfg.IdempotencyRetention,
				StoredHeaders: paymenthttp.StoredHeaders(), Registerer: tel.Registry, Logger: log})
			if err != nil {
				return err
			}
			apiMux := http.NewServeMux()
			paymenthttp.Routes(apiMux, svc, store, jobs, authz, log)
			api.Open(apiMux)
			ag.Add("prune", func(ctx context.Context) error {
				return service.Every(ctx, time.Minute, func(ctx context.Context) error {
					_, err1 := store.Prune(ctx, pool, 1000)
					_, err2 := jobs.Prune(ctx, 1000)
					return errors.Join(err1, err2)
				}, log)
			})
		}
		if cfg.has("worker") {
			bo := backoff.Policy{Initial: cfg.RetryInitial, Max: cfg.RetryMax, Multiplier: 2}
			for _, q := range []struct {
				name string
				h    jobqueue.Handler
			}{{paymentsvc.ChargeQueue, svc.HandleCharge}, {paymentsvc.RefundQueue, svc.HandleRefund}} {
				w := jobs.NewWorker(jobqueue.WorkerConfig{Queue: q.name, Concurrency: cfg.WorkerConcurrency,
					VisibilityTimeout: cfg.VisibilityTimeout, Backoff: bo, Extract: tel.Extract, Tracer: tel.Tracer("github.com/shopfloor/shopfloor/pkg/jobqueue"),
					Gate: jobqueue.BreakerGate(pspBreaker)}, q.h)
				ag.Add(q.name+"-worker", w.Run)
			}
			rec, err := svc.NewReconciler(paymentsvc.ReconcileConfig{Interval: cfg.ReconcileInterval, Grace: cfg.ReconcileGrace,
				PendingBound: cfg.ReconcilePendingBound}, tel.Registry)
			if err != nil {
				return err
			}
			ag.Add("reconciler", rec.Run)
		}
		if cfg.has("relay") || cfg.has("consumer") {
			nc, js, err := rt.ConnectNATS(ctx, cfg.NATSURL, health,
				stream.StreamConfig{Name: paymentsapi.Stream, Partitions: cfg.PaymentsPartitions},
				stream.StreamConfig{Name: ordersapi.Stream, Partitions: cfg.OrdersPartitions})
			if err != nil {
				return service.Canceled(err)
			}
			defer nc.Close()
			if cfg.has("relay") {
				relay, err := rt.NewRelay(pool, js, paymentsapi.Stream, cfg.PaymentsPartitions)
				if err != nil {
					return err
				}
				ag.Add("relay", relay.Run)
			}
			if cfg.has("consumer") {
				h := &paymentstream.Orders{Pool: pool, Svc: svc, DefaultPaymentMethod: cfg.DefaultPaymentMethod, Log: log}
				grp, err := rt.NewGroup(js, ordersapi.Stream, paymentstream.Group, cfg.OrdersPartitions, h.Handle)
				if err != nil {
					return err
				}
				ag.Add("orders-consumer", grp.Run)
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

// pspSim is `payments psp-sim`: the payment-provider simulator as its own
// process (an external party in the topology), with fault modes from
// PSP_SIM_* and switchable at run time on PUT /admin/faults.
func pspSim(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	type simConfig struct {
		Addr     string     `env:"PSP_SIM_ADDR" envDefault:":8099"`
		Seed     int64      `env:"PSP_SIM_SEED" envDefault:"1"`
		LogLevel slog.Level `env:"LOG_LEVEL" envDefault:"INFO"`
	}
	cfg, err := config.Load[simConfig](getenv)
	if err != nil {
		return err
	}
	faults, err := pspsim.FaultsFromEnv(getenv)
	if err != nil {
		return err
	}
	tel, err := telemetry.New(ctx, telemetry.Config{ServiceName: "psp-sim", LogLevel: cfg.LogLevel}, stdout)
	if err != nil {
		return err
	}
	defer func() { _ = tel.Shutdown(context.WithoutCancel(ctx)) }()
	sim, err := pspsim.New(pspsim.Config{Logger: tel.Logger, Registerer: tel.Registry, Seed: cfg.Seed, Faults: faults})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on PSP_SIM_ADDR %s: %w", cfg.Addr, err)
	}
	health := httpkit.NewHealth()
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", health.Livez())
	mux.Handle("GET /readyz", health.Readyz())
	mux.Handle("GET /metrics", tel.MetricsHandler())
	mux.Handle("/", sim.Handler())
	tel.Logger.InfoContext(ctx, "psp simulator listening", "addr", ln.Addr().String(), "faults", fmt.Sprintf("%+v", faults))
	return httpkit.Serve(ctx, httpkit.ServerConfig{}, ln, mux, health, tel.Logger)
}
