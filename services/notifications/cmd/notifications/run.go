package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/shopfloor/shopfloor/pkg/breaker"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/notifications/internal/email"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notificationhttp"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notificationstream"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notificationsvc"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

func redaction() map[string]func([]byte) []byte {
	return map[string]func([]byte) []byte{notificationsvc.EmailQueue: notificationsvc.Redact, notificationsvc.EmailDLQ: notificationsvc.Redact}
}

// sender builds the worker's SMTP side from cfg (already validated).
func sender(cfg Config) (*email.Composer, *email.Sender, error) {
	composer, err := email.NewComposer(cfg.SMTPFrom)
	if err != nil {
		return nil, nil, fmt.Errorf("SMTP_FROM: %w", err)
	}
	ecfg := email.Config{Host: cfg.SMTPHost, Port: cfg.SMTPPort, TLS: email.TLSMode(cfg.SMTPTLS),
		Username: cfg.SMTPUsername, Password: cfg.SMTPPassword, Timeout: cfg.SMTPTimeout}
	if cfg.SMTPCAFile != "" {
		if ecfg.RootCAs, err = loadCAs(cfg.SMTPCAFile); err != nil {
			return nil, nil, fmt.Errorf("SMTP_CA_FILE: %w", err)
		}
	}
	s, err := email.NewSender(ecfg)
	if err != nil {
		return nil, nil, err
	}
	return composer, s, nil
}

// wire builds the roles on the connected database: the job queue and
// the notification use case (with the SMTP side in the worker role), then
// each role.
func wire(ctx context.Context, app *service.App, cfg *Config) error {
	jobs, err := app.JobQueue(cfg.Jobs, redaction())
	if err != nil {
		return err
	}
	var (
		composer    *email.Composer
		mailer      notificationsvc.Mailer
		smtpBreaker *breaker.Breaker
	)
	if app.Has(service.RoleWorker) {
		if composer, mailer, smtpBreaker, err = guardedSender(app, cfg); err != nil {
			return err
		}
	}
	svc, err := notificationsvc.New(app.Pool, jobs, composer, mailer, notificationsvc.Config{MaxReceives: cfg.MaxReceives,
		VisibilityTimeout: cfg.VisibilityTimeout, Registerer: app.Tel.Registry, Inject: app.Tel.Inject}, app.Log, time.Now)
	if err != nil {
		return err
	}
	if err := svc.CreateQueues(ctx); err != nil {
		return err
	}
	if app.Has(service.RoleAPI) {
		mux := http.NewServeMux()
		notificationhttp.Routes(mux, svc, notificationhttp.Config{Authz: app.Authz, Log: app.Log, Jobs: jobs})
		app.OpenAPI(mux)
		app.Every("prune", time.Minute, func(ctx context.Context) error {
			_, err := jobs.Prune(ctx, 1000)
			return err
		})
	}
	if app.Has(service.RoleWorker) {
		app.Worker(jobs, cfg.Jobs, notificationsvc.EmailQueue, jobqueue.BreakerGate(smtpBreaker), svc.HandleEmail)
	}
	if app.Has(service.RoleConsumer) {
		return wireConsumer(ctx, app, cfg, svc)
	}
	return nil
}

// guardedSender is the worker's SMTP side behind its circuit breaker.
func guardedSender(app *service.App, cfg *Config) (*email.Composer, notificationsvc.Mailer, *breaker.Breaker, error) {
	c, s, err := sender(*cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	b, err := breaker.New(breaker.Config{Name: "smtp", Failures: cfg.SMTPBreakerFailures, CoolDown: cfg.SMTPBreakerCoolDown,
		Registerer: app.Tel.Registry, Logger: app.Log})
	if err != nil {
		return nil, nil, nil, err
	}
	return c, email.NewGuarded(s, b), b, nil
}

// wireConsumer is the consumer role: ORDERS into e-mails to send, and the
// inbox's pruning.
func wireConsumer(ctx context.Context, app *service.App, cfg *Config, svc *notificationsvc.Service) error {
	broker, err := app.ConnectStreams(ctx, service.Streams{Read: []stream.StreamConfig{{Name: ordersapi.Stream, Partitions: cfg.OrdersPartitions}}})
	if err != nil {
		return err
	}
	h := &notificationstream.Orders{Pool: app.Pool, Applier: svc, Group: cfg.OrdersGroup, Log: app.Log}
	grp, err := app.NewBatchGroup(broker, ordersapi.Stream, cfg.OrdersGroup, cfg.OrdersPartitions, h.HandleBatch)
	if err != nil {
		return err
	}
	app.Go("orders-consumer", grp.Run)
	app.Go("prune-inbox", app.PruneInbox(app.Pool))
	return nil
}
