package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/shopfloor/shopfloor/pkg/breaker"
	"github.com/shopfloor/shopfloor/pkg/idempotency"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymenthttp"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentstream"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentsvc"
	"github.com/shopfloor/shopfloor/services/payments/internal/psp"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

func redaction() map[string]func([]byte) []byte {
	return map[string]func([]byte) []byte{
		paymentsvc.ChargeQueue: paymentsvc.Redact, paymentsvc.ChargeDLQ: paymentsvc.Redact,
		paymentsvc.RefundQueue: paymentsvc.Redact, paymentsvc.RefundDLQ: paymentsvc.Redact,
	}
}

// wire builds the roles on the connected database: the job queues and
// the payment use case, then each role.
func wire(ctx context.Context, app *service.App, cfg *Config) error {
	jobs, err := app.JobQueue(cfg.Jobs, redaction())
	if err != nil {
		return err
	}
	var (
		provider   paymentsvc.Provider
		pspBreaker *breaker.Breaker
	)
	if app.Has(service.RoleWorker) {
		if provider, pspBreaker, err = guardedProvider(app, cfg); err != nil {
			return err
		}
	}
	svc, err := paymentsvc.New(app.Pool, jobs, outbox.New(paymentsapi.Stream, outbox.WithTraceInjector(app.Tel.Inject)), provider,
		paymentsvc.Config{MaxReceives: cfg.MaxReceives, VisibilityTimeout: cfg.VisibilityTimeout, ReconcileGrace: cfg.ReconcileGrace,
			RefundRetryMax: cfg.RefundRetryMax, Registerer: app.Tel.Registry, Inject: app.Tel.Inject}, app.Log, time.Now)
	if err != nil {
		return err
	}
	if err := svc.CreateQueues(ctx); err != nil {
		return err
	}
	if app.Has(service.RoleAPI) {
		if err := wireAPI(app, cfg, svc, jobs); err != nil {
			return err
		}
	}
	if app.Has(service.RoleWorker) {
		if err := wireWorkers(app, cfg, svc, jobs, pspBreaker); err != nil {
			return err
		}
	}
	return wireStreams(ctx, app, cfg, svc)
}

// guardedProvider is the provider's client behind its circuit breaker,
// which the charge and refund workers share.
func guardedProvider(app *service.App, cfg *Config) (paymentsvc.Provider, *breaker.Breaker, error) {
	c, err := psp.New(psp.Config{BaseURL: cfg.PSPURL, Timeout: cfg.PSPTimeout, HTTPClient: &http.Client{Transport: app.Tel.HTTPTransport(nil)}})
	if err != nil {
		return nil, nil, fmt.Errorf("PSP_URL: %w", err)
	}
	b, err := breaker.New(breaker.Config{Name: "psp", Failures: cfg.PSPBreakerFailures, CoolDown: cfg.PSPBreakerCoolDown,
		Registerer: app.Tel.Registry, Logger: app.Log})
	if err != nil {
		return nil, nil, err
	}
	return psp.NewGuarded(c, b), b, nil
}

// wireAPI mounts the API with idempotency keys, and prunes expired keys
// and finished jobs.
func wireAPI(app *service.App, cfg *Config, svc *paymentsvc.Service, jobs *jobqueue.Client) error {
	store, err := idempotency.New(idempotency.Config{Retention: cfg.IdempotencyRetention,
		StoredHeaders: paymenthttp.StoredHeaders(), Registerer: app.Tel.Registry, Logger: app.Log})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	paymenthttp.Routes(mux, svc, paymenthttp.Config{Authz: app.Authz, Log: app.Log, Idempotency: store, Jobs: jobs})
	app.OpenAPI(mux)
	app.Every("prune", time.Minute, func(ctx context.Context) error {
		_, err1 := store.Prune(ctx, app.Pool, 1000)
		_, err2 := jobs.Prune(ctx, 1000)
		return errors.Join(err1, err2)
	})
	return nil
}

// wireWorkers is the worker role: a charge and a refund worker behind the
// provider's breaker, and the reconciler of unknown outcomes.
func wireWorkers(app *service.App, cfg *Config, svc *paymentsvc.Service, jobs *jobqueue.Client, pspBreaker *breaker.Breaker) error {
	gate := jobqueue.BreakerGate(pspBreaker) // the two workers share the provider's breaker
	app.Worker(jobs, cfg.Jobs, paymentsvc.ChargeQueue, gate, svc.HandleCharge)
	app.Worker(jobs, cfg.Jobs, paymentsvc.RefundQueue, gate, svc.HandleRefund)
	rec, err := svc.NewReconciler(paymentsvc.ReconcileConfig{Interval: cfg.ReconcileInterval, Grace: cfg.ReconcileGrace,
		PendingBound: cfg.ReconcilePendingBound}, app.Tel.Registry)
	if err != nil {
		return err
	}
	app.Go("reconciler", rec.Run)
	return nil
}

// wireStreams is the relay of PAYMENTS and the consumer of ORDERS.
func wireStreams(ctx context.Context, app *service.App, cfg *Config, svc *paymentsvc.Service) error {
	if !app.HasAny(service.RoleRelay, service.RoleConsumer) {
		return nil
	}
	streams := service.Streams{Own: []stream.StreamConfig{{Name: paymentsapi.Stream, Partitions: cfg.PaymentsPartitions}}}
	if app.Has(service.RoleConsumer) {
		streams.Read = []stream.StreamConfig{{Name: ordersapi.Stream, Partitions: cfg.OrdersPartitions}}
	}
	broker, err := app.ConnectStreams(ctx, streams)
	if err != nil {
		return err
	}
	if app.Has(service.RoleRelay) {
		relay, err := app.NewRelay(app.Pool, broker, paymentsapi.Stream, cfg.PaymentsPartitions)
		if err != nil {
			return err
		}
		app.Go("relay", relay.Run)
	}
	if app.Has(service.RoleConsumer) {
		h := &paymentstream.Orders{Pool: app.Pool, Svc: svc, DefaultPaymentMethod: cfg.DefaultPaymentMethod, Log: app.Log}
		grp, err := app.NewBatchGroup(broker, ordersapi.Stream, paymentstream.Group, cfg.OrdersPartitions, h.HandleBatch)
		if err != nil {
			return err
		}
		app.Go("orders-consumer", grp.Run)
		app.Go("prune-inbox", app.PruneInbox(app.Pool))
	}
	return nil
}
