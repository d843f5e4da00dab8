package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/mail"
	"os"
	"regexp"
	"slices"
	"time"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/breaker"
	"github.com/shopfloor/shopfloor/pkg/config"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/lifecycle"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/telemetry"
	"github.com/shopfloor/shopfloor/services/notifications/internal/email"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notificationhttp"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notificationstream"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notificationsvc"
	"github.com/shopfloor/shopfloor/services/notifications/migrations"
	"github.com/shopfloor/shopfloor/services/notifications/smtpsink"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

// Config is the serve command's configuration, from the environment.
type Config struct {
	service.Base
	service.HTTP
	HTTPAddr string `env:"HTTP_ADDR" envDefault:":8084"`
	// AdminAddr is the admin listener: /metrics, /readyz details and /v1/admin. Never publish it (ADR 0023).
	AdminAddr string `env:"ADMIN_ADDR" envDefault:":9084"`
	// NATSURL is needed by the consumer role.
	NATSURL          string `env:"NATS_URL"`
	OrdersPartitions int    `env:"ORDERS_PARTITIONS" envDefault:"8"`
	// OrdersGroup is the consumer group on ORDERS. A rebuild runs a new
	// group from the start of the stream: it records nothing twice and
	// sends nothing twice (one row per order and kind).
	OrdersGroup string `env:"ORDERS_GROUP" envDefault:"notifications"`
	// The SMTP server the worker role sends through.
	SMTPHost string `env:"SMTP_HOST"`
	// SMTPPort 0 is the TLS mode's usual port: 25, 587, 465.
	SMTPPort     int    `env:"SMTP_PORT" envDefault:"0"`
	SMTPTLS      string `env:"SMTP_TLS" envDefault:"starttls"`
	SMTPUsername string `env:"SMTP_USERNAME"`
	SMTPPassword string `env:"SMTP_PASSWORD" secret:"true"`
	// SMTPFrom is the sender, "shopfloor <shop@example.com>" or a bare
	// address.
	SMTPFrom    string        `env:"SMTP_FROM"`
	SMTPTimeout time.Duration `env:"SMTP_TIMEOUT" envDefault:"30s"`
	// The SMTP circuit breaker (pkg/breaker): open after this many outage
	// errors in a row (refused, 421, timeouts; not a rejected recipient),
	// then the e-mail worker receives nothing for the cool-down (doubling
	// per failed probe, up to 1m) and the e-mails wait in their queue.
	SMTPBreakerFailures int           `env:"SMTP_BREAKER_FAILURES" envDefault:"5"`
	SMTPBreakerCoolDown time.Duration `env:"SMTP_BREAKER_COOL_DOWN" envDefault:"5s"`
	// SMTPCAFile is a PEM file of CAs to trust for the server's
	// certificate instead of the system's roots.
	SMTPCAFile string `env:"SMTP_CA_FILE"`
	// The e-mail queue's redrive policy and the worker.
	MaxReceives       int           `env:"MAX_RECEIVES" envDefault:"10"`
	VisibilityTimeout time.Duration `env:"VISIBILITY_TIMEOUT" envDefault:"30s"`
	WorkerConcurrency int           `env:"WORKER_CONCURRENCY" envDefault:"4"`
	RetryInitial      time.Duration `env:"RETRY_INITIAL" envDefault:"1s"`
	RetryMax          time.Duration `env:"RETRY_MAX" envDefault:"5m"`
	// JobqueueAsyncAcks commits receives and deletes without waiting for
	// the WAL flush (jobqueue.Options.AsyncAcks, ADR 0018).
	JobqueueAsyncAcks bool `env:"JOBQUEUE_ASYNC_ACKS" envDefault:"false"`
	// Auth is the identity provider whose access tokens the api role
	// accepts (AUTH_ISSUER, required by the api role; AUTH_AUDIENCE
	// default "notifications"; AUTH_ROLES_CLAIM).
	Auth auth.Config
	// Roles: api, consumer (of ORDERS), worker (sends the e-mails).
	Roles []string `env:"ROLES" envDefault:"api,consumer,worker"`
}

var groupRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate reports rules beyond one value's syntax, one line per bad
// value.
func (c Config) Validate() []error {
	errs := service.CheckRoles(c.Roles, []string{"api", "consumer", "worker"})
	if c.has("api") {
		errs = append(errs, c.Auth.Validate()...)
	}
	if c.has("consumer") && c.NATSURL == "" {
		errs = append(errs, errors.New("NATS_URL: required by the consumer role"))
	}
	if err := stream.CheckPartitions("ORDERS_PARTITIONS", c.OrdersPartitions); err != nil {
		errs = append(errs, err)
	}
	if !groupRE.MatchString(c.OrdersGroup) {
		errs = append(errs, fmt.Errorf("ORDERS_GROUP: must be 1-64 letters, digits, _ or - (got %q)", c.OrdersGroup))
	}
	mode, err := email.ParseTLSMode(c.SMTPTLS)
	if err != nil {
		errs = append(errs, fmt.Errorf("SMTP_TLS: must be none, starttls or tls (got %q)", c.SMTPTLS))
	}
	if c.SMTPPort < 0 || c.SMTPPort > 65535 {
		errs = append(errs, fmt.Errorf("SMTP_PORT: must be 1..65535, or 0 for the TLS mode's usual port (got %d)", c.SMTPPort))
	}
	if c.SMTPUsername != "" && mode == email.TLSNone {
		errs = append(errs, errors.New("SMTP_USERNAME: authentication needs SMTP_TLS=starttls or tls (the password would cross the network in clear)"))
	}
	if c.SMTPPassword != "" && c.SMTPUsername == "" {
		errs = append(errs, errors.New("SMTP_PASSWORD: set without SMTP_USERNAME"))
	}
	if c.SMTPBreakerFailures < 1 || c.SMTPBreakerCoolDown <= 0 {
		errs = append(errs, fmt.Errorf("SMTP_BREAKER_FAILURES, SMTP_BREAKER_COOL_DOWN: need at least 1 failure and a positive cool-down (got %d, %s)", c.SMTPBreakerFailures, c.SMTPBreakerCoolDown))
	}
	if c.SMTPTimeout < time.Second {
		errs = append(errs, fmt.Errorf("SMTP_TIMEOUT: must be at least 1s (got %s)", c.SMTPTimeout))
	}
	if c.has("worker") {
		if c.SMTPHost == "" {
			errs = append(errs, errors.New("SMTP_HOST: required by the worker role (the SMTP server, e.g. 127.0.0.1 with the smtp-sink command)"))
		}
		if _, err := mail.ParseAddress(c.SMTPFrom); err != nil {
			errs = append(errs, fmt.Errorf("SMTP_FROM: required by the worker role, an address such as \"shopfloor <shop@example.com>\" (got %q)", c.SMTPFrom))
		}
		if c.SMTPCAFile != "" {
			if _, err := loadCAs(c.SMTPCAFile); err != nil {
				errs = append(errs, fmt.Errorf("SMTP_CA_FILE: %w", err))
			}
		}
	}
	if c.MaxReceives < 1 || c.MaxReceives > 100 {
		errs = append(errs, fmt.Errorf("MAX_RECEIVES: must be 1..100 (got %d)", c.MaxReceives))
	}
	if c.VisibilityTimeout < time.Second {
		errs = append(errs, fmt.Errorf("VISIBILITY_TIMEOUT: must be at least 1s (got %s)", c.VisibilityTimeout))
	}
	if c.WorkerConcurrency < 1 {
		errs = append(errs, fmt.Errorf("WORKER_CONCURRENCY: must be at least 1 (got %d)", c.WorkerConcurrency))
	}
	if c.RetryInitial <= 0 || c.RetryMax < c.RetryInitial {
		errs = append(errs, errors.New("RETRY_INITIAL, RETRY_MAX: need 0 < RETRY_INITIAL <= RETRY_MAX"))
	}
	return errs
}

func (c Config) has(role string) bool { return slices.Contains(c.Roles, role) }

// loadCAs reads a PEM bundle.
func loadCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path) //nolint:gosec // G304: the operator names the file
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

const usage = `usage: notifications [serve | migrate | smtp-sink | queue ... | audit ... | stream-dlq ...]`

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
	case "migrate", "queue", "audit":
		cfg.Base, err = config.Load[service.Base](getenv)
	case "smtp-sink":
		return smtpSink(ctx, getenv, stdout)
	case "stream-dlq":
		return service.DLQCommand(ctx, "notifications", ordersapi.Stream, rest, getenv, stdout)
	default:
		return fmt.Errorf("unknown command %q (%s)", cmd, usage)
	}
	if err != nil {
		return err
	}
	rt, err := service.Start(ctx, "notifications", cfg.Base, stdout)
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	switch cmd {
	case "migrate":
		return rt.Migrate(ctx, migrations.FS)
	case "queue":
		return rt.QueueCommand(ctx, redaction(), rest, stdout)
	case "audit":
		return rt.AuditCommand(ctx, rest, stdout)
	}
	lns, err := service.Listen(cfg.HTTPAddr, cfg.AdminAddr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, rt, lns)
}

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

// serve runs the roles. HTTP starts at once; API routes are mounted once
// PostgreSQL is up.
func serve(ctx context.Context, cfg Config, rt *service.Runtime, lns service.Listeners) error {
	log, tel := rt.Log, rt.Tel
	health := httpkit.NewHealth()
	health.AddCheck("postgres", rt.PG.Check)
	if cfg.has("consumer") {
		rt.RequireNATS(health)
	}
	mux := rt.NewMuxes(health)
	api := service.NewGate("notifications")
	authz, err := rt.APIVerifier(cfg.Auth, cfg.has("api"), health)
	if err != nil {
		return err
	}
	mux.Public.Handle("/v1/", api)
	// The admin API (notificationhttp.AdminRoutes, for operators) is served
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
			composer    *email.Composer
			mailer      notificationsvc.Mailer
			smtpBreaker *breaker.Breaker
		)
		if cfg.has("worker") {
			c, s, err := sender(cfg)
			if err != nil {
				return err
			}
			smtpBreaker, err = breaker.New(breaker.Config{Name: "smtp", Failures: cfg.SMTPBreakerFailures, CoolDown: cfg.SMTPBreakerCoolDown,
				Registerer: tel.Registry, Logger: log})
			if err != nil {
				return err
			}
			composer, mailer = c, email.NewGuarded(s, smtpBreaker)
		}
		svc, err := notificationsvc.New(pool, jobs, composer, mailer, notificationsvc.Config{MaxReceives: cfg.MaxReceives,
			VisibilityTimeout: cfg.VisibilityTimeout, Registerer: tel.Registry, Inject: tel.Inject}, log, time.Now)
		if err != nil {
			return err
		}
		if err := svc.CreateQueues(ctx); err != nil {
			return err
		}
		ag := lifecycle.NewGroup(log)
		if cfg.has("api") {
			apiMux := http.NewServeMux()
			notificationhttp.Routes(apiMux, svc, authz, log)
			notificationhttp.AdminRoutes(apiMux, jobs, authz)
			api.Open(apiMux)
			ag.Add("prune", func(ctx context.Context) error {
				return service.Every(ctx, time.Minute, func(ctx context.Context) error {
					_, err := jobs.Prune(ctx, 1000)
					return err
				}, log)
			})
		}
		if cfg.has("worker") {
			w := jobs.NewWorker(jobqueue.WorkerConfig{Queue: notificationsvc.EmailQueue, Concurrency: cfg.WorkerConcurrency,
				VisibilityTimeout: cfg.VisibilityTimeout, Backoff: backoff.Policy{Initial: cfg.RetryInitial, Max: cfg.RetryMax, Multiplier: 2},
				Extract: tel.Extract, Tracer: tel.Tracer("github.com/shopfloor/shopfloor/pkg/jobqueue"), Gate: jobqueue.BreakerGate(smtpBreaker)},
				svc.HandleEmail)
			ag.Add("email-worker", w.Run)
		}
		if cfg.has("consumer") {
			nc, js, err := rt.ConnectNATS(ctx, cfg.NATSURL, health, stream.StreamConfig{Name: ordersapi.Stream, Partitions: cfg.OrdersPartitions})
			if err != nil {
				return service.Canceled(err)
			}
			defer nc.Close()
			h := &notificationstream.Orders{Applier: svc, Group: cfg.OrdersGroup, Log: log}
			grp, err := rt.NewGroup(js, ordersapi.Stream, cfg.OrdersGroup, cfg.OrdersPartitions, h.Handle)
			if err != nil {
				return err
			}
			ag.Add("orders-consumer", grp.Run)
			ag.Add("prune-inbox", rt.PruneInbox(pool))
		}
		ag.Add("wait", func(ctx context.Context) error { <-ctx.Done(); return nil })
		return ag.Run(ctx)
	})
	g.Add("http", func(ctx context.Context) error {
		return rt.ServeMuxes(ctx, cfg.HTTP, lns, mux, health)
	})
	return g.Run(ctx)
}

// smtpSink is `notifications smtp-sink`: the SMTP sink as its own process
// (the mail relay of tests and drills), SMTP on SMTP_SINK_ADDR, its HTTP
// API (messages, stats, down switch), probes and metrics on
// SMTP_SINK_HTTP_ADDR. SMTP_SINK_DOWN=true starts it refusing mail.
func smtpSink(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	type sinkConfig struct {
		Addr     string     `env:"SMTP_SINK_ADDR" envDefault:":1025"`
		HTTPAddr string     `env:"SMTP_SINK_HTTP_ADDR" envDefault:":8025"`
		Down     bool       `env:"SMTP_SINK_DOWN" envDefault:"false"`
		LogLevel slog.Level `env:"LOG_LEVEL" envDefault:"INFO"`
	}
	cfg, err := config.Load[sinkConfig](getenv)
	if err != nil {
		return err
	}
	tel, err := telemetry.New(ctx, telemetry.Config{ServiceName: "smtp-sink", LogLevel: cfg.LogLevel}, stdout)
	if err != nil {
		return err
	}
	defer func() { _ = tel.Shutdown(context.WithoutCancel(ctx)) }()
	sink, err := smtpsink.New(smtpsink.Config{Logger: tel.Logger, Registerer: tel.Registry})
	if err != nil {
		return err
	}
	sink.SetDown(cfg.Down)
	smtpLn, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on SMTP_SINK_ADDR %s: %w", cfg.Addr, err)
	}
	httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		_ = smtpLn.Close()
		return fmt.Errorf("listen on SMTP_SINK_HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	health := httpkit.NewHealth()
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", health.Livez())
	mux.Handle("GET /readyz", health.Readyz())
	mux.Handle("GET /metrics", tel.MetricsHandler())
	mux.Handle("/", sink.Handler())
	g := lifecycle.NewGroup(tel.Logger)
	g.Add("smtp", func(ctx context.Context) error {
		stop := context.AfterFunc(ctx, func() { _ = sink.Close() })
		defer stop()
		return sink.Serve(smtpLn)
	})
	g.Add("http", func(ctx context.Context) error {
		return httpkit.Serve(ctx, httpkit.ServerConfig{}, httpLn, mux, health, tel.Logger)
	})
	err = g.Run(ctx)
	return errors.Join(err, sink.Close())
}
