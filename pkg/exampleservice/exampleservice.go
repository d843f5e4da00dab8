// Package exampleservice is the smallest service built the way every
// shopfloor service is built. It exists to show, and to test, the platform
// pieces working together: configuration from env (pkg/config), telemetry
// (pkg/telemetry), the HTTP layer on go-kit (pkg/httpkit), health and
// readiness with start-up retry (pkg/lifecycle), embedded migrations
// (pkg/pgdb), events (pkg/events) over NATS JetStream through watermill, and
// the test harness (pkg/testinfra). Copy its shape, not its domain.
//
// The domain is a note: POST /v1/notes stores a note and emits
// note.created; the consumer role receives the event and marks the note as
// seen, recording the trace id it saw, so a test can show one trace going
// HTTP → message metadata → consumer span.
//
// It publishes after commit, by hand, which the real services never do
// (STYLE.md, habit 5): they write the event into pkg/outbox in the same
// transaction. The example keeps the one line that differs easy to see.
//
// Roles (ROLES, comma-separated; default "api,consumer"): api serves
// /v1/notes; consumer runs the note.created handler. Every process serves
// /healthz, /readyz and /metrics. Command `migrate` applies the migrations
// and exits.
package exampleservice

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/pkg/config"
	"github.com/shopfloor/shopfloor/pkg/exampleservice/migrations"
	"github.com/shopfloor/shopfloor/pkg/lifecycle"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/telemetry"
)

// ServiceName names the service in telemetry and in events' source.
const ServiceName = "exampleservice"

// Config is read from the environment by config.Load.
type Config struct {
	// HTTPAddr is where /v1, /healthz, /readyz and /metrics are served.
	HTTPAddr string `env:"HTTP_ADDR" envDefault:":8080"`
	// DrainDelay keeps serving after /readyz turns 503 on shutdown, so a
	// load balancer stops sending traffic before the listener closes.
	DrainDelay time.Duration `env:"HTTP_DRAIN_DELAY" envDefault:"0s"`
	// ShutdownTimeout bounds waiting for in-flight requests on shutdown.
	ShutdownTimeout time.Duration `env:"HTTP_SHUTDOWN_TIMEOUT" envDefault:"20s"`
	// DB is DATABASE_URL (required) and the pool settings.
	DB pgdb.Config
	// NATSURL is the JetStream server, e.g. nats://127.0.0.1:4222.
	NATSURL string `env:"NATS_URL,required"`
	// Stream receives note.created; created at start if missing.
	Stream string `env:"NOTES_STREAM" envDefault:"NOTES"`
	// Group is the durable consumer name of the consumer role.
	Group string `env:"CONSUMER_GROUP" envDefault:"exampleservice"`
	// Roles to run in this process: api, consumer.
	Roles []string `env:"ROLES" envDefault:"api,consumer"`
	// ServiceVersion and InstanceID are telemetry resource attributes.
	ServiceVersion string `env:"SERVICE_VERSION" envDefault:"dev"`
	InstanceID     string `env:"INSTANCE_ID"`
	// OTLPEndpoint turns on OTLP export of traces and metrics.
	OTLPEndpoint string `env:"OTEL_EXPORTER_OTLP_ENDPOINT"`
	// LogLevel: DEBUG, INFO, WARN, ERROR.
	LogLevel slog.Level `env:"LOG_LEVEL" envDefault:"INFO"`
}

var streamName = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,31}$`)

// Validate reports the rules a single value's syntax cannot express.
func (c Config) Validate() []error {
	var errs []error
	for _, r := range c.Roles {
		if !slices.Contains([]string{"api", "consumer"}, r) {
			errs = append(errs, fmt.Errorf("ROLES: unknown role %q (known: api, consumer)", r))
		}
	}
	if !streamName.MatchString(c.Stream) {
		errs = append(errs, fmt.Errorf("NOTES_STREAM: must be upper-case letters, digits and _ (got %q)", c.Stream))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("HTTP_SHUTDOWN_TIMEOUT: must be positive (got %s)", c.ShutdownTimeout))
	}
	if c.DB.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("DATABASE_MAX_CONNS: must be positive (got %d)", c.DB.MaxConns))
	}
	return errs
}

func (c Config) has(role string) bool { return slices.Contains(c.Roles, role) }

// Run is the whole program: main only calls it. args[1] is the command
// (serve, the default, or migrate); getenv supplies the configuration; logs
// go to stdout as JSON.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cmd := "serve"
	if len(args) > 1 {
		cmd = args[1]
	}
	if cmd != "serve" && cmd != "migrate" {
		return fmt.Errorf("unknown command %q (usage: %s [serve|migrate])", cmd, ServiceName)
	}
	cfg, err := config.Load[Config](getenv)
	if err != nil {
		return err
	}
	tel, err := telemetry.New(ctx, telemetry.Config{
		ServiceName:    ServiceName,
		ServiceVersion: cfg.ServiceVersion,
		InstanceID:     cfg.InstanceID,
		OTLPEndpoint:   cfg.OTLPEndpoint,
		LogLevel:       cfg.LogLevel,
	}, stdout)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			tel.Logger.Error("telemetry shutdown", "err", err)
		}
	}()
	if cmd == "migrate" {
		return Migrate(ctx, cfg, tel.Logger)
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	return Serve(ctx, cfg, tel, ln)
}

// Migrate applies the embedded migrations, waiting for the database to come
// up (a one-shot job in compose starts with its database).
func Migrate(ctx context.Context, cfg Config, log *slog.Logger) error {
	dep := lifecycle.NewDependency("postgres")
	pool, err := lifecycle.Connect(ctx, log, dep, lifecycle.DefaultRetry, func(ctx context.Context) (*pgxpool.Pool, error) {
		return pgdb.Open(ctx, cfg.DB)
	})
	if err != nil {
		return err
	}
	defer pool.Close()
	applied, err := pgdb.Migrate(ctx, pool, migrations.FS, log)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	log.InfoContext(ctx, "migrations applied", "versions", applied)
	return nil
}

// errNotReady is returned by API handlers before the dependencies are up.
var errNotReady = errors.New("dependencies not connected yet")
