// Package service is the wiring every shopfloor service repeats, in one
// place. A service's cmd/<svc>/main.go declares its command table (Program:
// its roles, its own commands, and a Wire function that builds the roles
// on the connected database) and Program.Run does the rest: configuration
// from the environment with every problem reported at once, telemetry,
// the two listeners, the PostgreSQL pool connected with retries and
// reported on /readyz, NATS JetStream with the service's streams ensured
// (App.NATS), an API that answers 503 until Wire mounts it, the standard
// middleware, per-caller rate limits in front of the public API
// (RateLimit, ADR 0038), the operator commands every service shares (migrate, audit,
// outbox, queue, dlq, help), and role supervision.
//
// It is a small, readable runner, not a framework (ADR 0034): a forker can
// read Program.Run in one sitting and inline it back into main.go.
//
// Start-up order (what a service gets by using it): the HTTP server
// listens at once, so /healthz answers 200 and /readyz answers 503 naming
// the dependency that is still down while PostgreSQL and NATS are dialled
// with capped backoff, forever; API routes answer 503 with Retry-After
// until Wire opens the gate (App.OpenAPI). Shutdown runs in reverse
// (lifecycle.Group), and what Wire deferred (App.Defer) runs last.
//
// Two listeners (ADR 0023): HTTP_ADDR serves the API, /healthz and a
// /readyz without details; ADMIN_ADDR serves /metrics, /readyz naming
// each failing check, /healthz and the admin API under /v1/admin/. Only
// the first may be published or routed to from the edge (Listen,
// NewMuxes, ServeMuxes).
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/audit"
	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/config"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/inbox"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/lifecycle"
	"github.com/shopfloor/shopfloor/pkg/natsauth"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/stream"
	kafkastream "github.com/shopfloor/shopfloor/pkg/stream/kafka"
	"github.com/shopfloor/shopfloor/pkg/telemetry"
)

// Base is what every command of a service with a database needs: the
// database and telemetry. Services embed it in their config struct.
type Base struct {
	DB    pgdb.Config
	Relay RelayElection
	Telemetry
}

// RelayElection is how the relay role elects its leader (pkg/outbox,
// ADR 0042). The default, an advisory lock, needs a direct connection
// (or a session-mode pool); behind PgBouncer in transaction mode set
// OUTBOX_LEADER=lease (the service's migrations carry outbox_leader) and
// DATABASE_URL with default_query_exec_mode=exec.
type RelayElection struct {
	// Leader is "advisory" or "lease" (outbox.Leadership).
	Leader string `env:"OUTBOX_LEADER" envDefault:"advisory"`
	// ListenURL is a direct PostgreSQL URL the lease leader LISTENs on
	// for new rows; empty, it polls every second.
	ListenURL string `env:"DATABASE_LISTEN_URL"`
}

// HTTP is the server part of a serve command's config. Services embed it
// and declare their own addresses, each with its own default port:
// HTTP_ADDR, the public listener (the API, /healthz, a /readyz without
// details), and ADMIN_ADDR, the admin listener (/metrics, /readyz with
// each check's error, /healthz and the admin API under /v1/admin/), whose
// default port is the public one + 1000 (catalog :8081 and :9081). The
// admin listener must never be published or routed to from the edge
// (ADR 0023). Both drain together.
type HTTP struct {
	DrainDelay      time.Duration `env:"HTTP_DRAIN_DELAY" envDefault:"0s"`
	ShutdownTimeout time.Duration `env:"HTTP_SHUTDOWN_TIMEOUT" envDefault:"20s"`
}

// Runtime holds a running command's telemetry and its PostgreSQL
// dependency (for /readyz).
type Runtime struct {
	Name string
	Tel  *telemetry.Telemetry
	Log  *slog.Logger
	// PG is marked up and down by OpenPG; add PG.Check to the health
	// checks of a serve command.
	PG   *lifecycle.Dependency
	base Base

	nats     *lifecycle.Dependency
	nc       atomic.Pointer[nats.Conn]
	natsOnce sync.Once
	kafka    kafkaState
}

// Start sets up telemetry for the service name (logs to logOut as JSON).
// Call Close when the command ends: it flushes traces and metrics.
func Start(ctx context.Context, name string, base Base, logOut io.Writer) (*Runtime, error) {
	tel, err := telemetry.New(ctx, telemetry.Config{
		ServiceName: name, ServiceVersion: base.ServiceVersion, InstanceID: base.InstanceID,
		OTLPEndpoint: base.OTLPEndpoint, LogLevel: base.LogLevel,
	}, logOut)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	return &Runtime{Name: name, Tel: tel, Log: tel.Logger, PG: lifecycle.NewDependency("postgres"), base: base,
		nats: lifecycle.NewDependency("nats"), kafka: kafkaState{dep: lifecycle.NewDependency("kafka")}}, nil
}

// Close flushes telemetry, waiting at most 5 seconds even when ctx has
// ended.
func (rt *Runtime) Close(ctx context.Context) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := rt.Tel.Shutdown(sctx); err != nil {
		rt.Log.WarnContext(ctx, "telemetry shutdown", "err", err)
	}
}

// OpenPG connects the pool, retrying with capped backoff until it answers
// or ctx ends, and keeps rt.PG up to date.
func (rt *Runtime) OpenPG(ctx context.Context) (*pgxpool.Pool, error) {
	return lifecycle.Connect(ctx, rt.Log, rt.PG, lifecycle.DefaultRetry, func(ctx context.Context) (*pgxpool.Pool, error) {
		return pgdb.Open(ctx, rt.base.DB)
	})
}

// Migrate is the migrate command: it applies the embedded goose migrations
// (one migrator at a time, by advisory lock) and logs what it applied.
func (rt *Runtime) Migrate(ctx context.Context, migrations fs.FS) error {
	// No statement timeout: building an index on a large table may take
	// longer than a request's statement may. The lock timeout stays: a
	// migration that waits for a table lock behind live traffic fails
	// and is run again, instead of queueing every query behind it.
	cfg := rt.base.DB
	cfg.StatementTimeout = -1
	pool, err := lifecycle.Connect(ctx, rt.Log, rt.PG, lifecycle.DefaultRetry, func(ctx context.Context) (*pgxpool.Pool, error) {
		return pgdb.Open(ctx, cfg)
	})
	if err != nil {
		return err
	}
	defer pool.Close()
	applied, err := pgdb.Migrate(ctx, pool, migrations, rt.Log)
	if err != nil {
		return err
	}
	rt.Log.InfoContext(ctx, "migrations applied", "versions", applied)
	return nil
}

// RequireNATS registers the "nats" readiness check on health: /readyz
// answers 503 naming nats until ConnectNATS has connected and ensured the
// streams, and whenever the connection is down. Call it while wiring, before
// serving, in every process whose roles need NATS: a check registered only
// when ConnectNATS starts would let /readyz pass before the streams exist.
// Calling it again (ConnectNATS does) adds nothing.
func (rt *Runtime) RequireNATS(health *httpkit.Health) {
	rt.natsOnce.Do(func() { health.AddCheck("nats", rt.natsCheck) })
}

func (rt *Runtime) natsCheck(ctx context.Context) error {
	if nc := rt.nc.Load(); nc != nil && !nc.IsConnected() {
		return fmt.Errorf("disconnected (%s)", nc.Status())
	}
	return rt.nats.Check(ctx)
}

// Streams are the streams a process uses (ADR 0039). Own are the
// service's own streams, fed by its outbox relay: created, or updated to
// the config, at every start (stream.EnsureStream). Read are other
// services' streams its consumer groups read: they must exist with the
// configured partition count (stream.BindStream), and the process waits
// until their owner has created them. A consumer never creates or
// changes its producer's stream, and its NATS user may not.
type Streams struct {
	Own  []stream.StreamConfig
	Read []stream.StreamConfig
}

// prepare ensures the own streams, with replicas copies of each message
// unless a StreamConfig says otherwise, and binds the read ones.
func (s Streams) prepare(ctx context.Context, js jetstream.JetStream, replicas int) error {
	for _, sc := range s.Own {
		if sc.Replicas == 0 {
			sc.Replicas = replicas
		}
		if err := stream.EnsureStream(ctx, js, sc); err != nil {
			return err
		}
	}
	for _, sc := range s.Read {
		if err := stream.BindStream(ctx, js, sc.Name, sc.Partitions); err != nil {
			return err
		}
	}
	return nil
}

// ConnectNATS dials cfg's server as its user (reconnecting forever once
// connected), ensures the streams the service owns and binds to those it
// reads (Streams), and reports the "nats" dependency on health
// (RequireNATS). It retries with capped backoff until it succeeds or ctx
// ends; its errors name the server by cfg.Redacted, never a password.
func (rt *Runtime) ConnectNATS(ctx context.Context, cfg natsauth.Config, health *httpkit.Health, streams Streams) (*nats.Conn, jetstream.JetStream, error) {
	rt.RequireNATS(health)
	nc, err := lifecycle.Connect(ctx, rt.Log, rt.nats, lifecycle.DefaultRetry, func(ctx context.Context) (*nats.Conn, error) {
		nc, err := cfg.Connect(rt.Name, nats.MaxReconnects(-1),
			// The server's refusals (a permissions violation: the
			// operation is outside the user's permissions, ADR 0039)
			// arrive apart from the call, which then times out.
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				rt.Log.Error("NATS refused an operation", "err", err)
			}))
		if err != nil {
			return nil, err
		}
		js, err := jetstream.New(nc)
		if err == nil {
			err = streams.prepare(ctx, js, cfg.StreamReplicas)
		}
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("NATS at %s: %w", cfg.Redacted(), err)
		}
		return nc, nil
	})
	if err != nil {
		return nil, nil, err
	}
	rt.nc.Store(nc)
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// Gate serves the API once it is mounted, and 503 with Retry-After: 1
// until then (dependencies not reachable yet). The zero value is closed.
type Gate struct {
	h    atomic.Pointer[http.Handler]
	what string
}

// NewGate returns a closed gate; what names the service in the 503.
func NewGate(what string) *Gate { return &Gate{what: what} }

// Open mounts h: from now on every request goes to it.
func (g *Gate) Open(h http.Handler) { g.h.Store(&h) }

func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := g.h.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	p := httpkit.NewProblem(http.StatusServiceUnavailable, "not-ready", g.what+" is connecting to its dependencies")
	p.RetryAfter = time.Second
	httpkit.WriteProblem(w, p)
}

// Handler wraps the admin listener's mux in the standard middleware,
// outermost first: tracing and HTTP metrics (httpkit.Trace: the caller's
// trace context and baggage are trusted, only the system's own processes
// reach this listener), X-Content-Type-Options: nosniff, access log, panic
// recovery, body size limit.
func (rt *Runtime) Handler(mux http.Handler) http.Handler {
	return rt.handler(mux, httpkit.Trace(rt.Tel.TracerProvider, rt.Tel.Propagator, rt.Tel.MeterProvider))
}

// EdgeHandler is Handler for the public listener, which callers outside
// the system reach: its tracing is httpkit.TraceEdge (every request starts
// a new trace, linked to the caller's span; baggage from outside is
// dropped; ADR 0035).
func (rt *Runtime) EdgeHandler(mux http.Handler) http.Handler {
	return rt.handler(mux, httpkit.TraceEdge(rt.Tel.TracerProvider, rt.Tel.Propagator, rt.Tel.MeterProvider))
}

func (rt *Runtime) handler(mux http.Handler, trace httpkit.Middleware) http.Handler {
	return httpkit.Chain(mux,
		trace,
		httpkit.NoSniff(),
		httpkit.AccessLog(rt.Log),
		httpkit.Recover(rt.Log),
		httpkit.LimitBody(httpkit.DefaultMaxBodyBytes),
	)
}

// Listeners are a serve command's two listeners (ADR 0023): Public on
// HTTP_ADDR, which the edge reaches, and Admin on ADMIN_ADDR, which only
// operators and the metrics scraper reach.
type Listeners struct {
	Public, Admin net.Listener
}

// Listen opens both listeners; an error names the variable whose address
// failed, and leaves nothing open. The two addresses must differ (":0"
// twice is fine: two free ports).
func Listen(httpAddr, adminAddr string) (Listeners, error) {
	if httpAddr == adminAddr && !strings.HasSuffix(httpAddr, ":0") {
		return Listeners{}, fmt.Errorf("ADMIN_ADDR %s: must differ from HTTP_ADDR (the admin listener is never published)", adminAddr)
	}
	pub, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return Listeners{}, fmt.Errorf("listen on HTTP_ADDR %s: %w", httpAddr, err)
	}
	adm, err := net.Listen("tcp", adminAddr)
	if err != nil {
		_ = pub.Close()
		return Listeners{}, fmt.Errorf("listen on ADMIN_ADDR %s: %w", adminAddr, err)
	}
	return Listeners{Public: pub, Admin: adm}, nil
}

// Close closes both listeners (ServeMuxes closes them itself; this is for
// a command that fails before serving).
func (l Listeners) Close() error {
	return errors.Join(l.Public.Close(), l.Admin.Close())
}

// Muxes are the routes of a serve command's two listeners, sharing one
// Health.
type Muxes struct {
	// Public is served on HTTP_ADDR (httpkit.NewPublicMux): /healthz, a
	// /readyz that answers ready or not and nothing more, and the API the
	// service mounts (usually a Gate on "/v1/"). /metrics and /v1/admin/
	// answer 404 whatever is mounted on "/v1/".
	Public *http.ServeMux
	// Admin is served on ADMIN_ADDR (httpkit.NewAdminMux): /healthz,
	// /readyz with each check's error, /metrics (the service's registry),
	// and the admin API the service mounts on httpkit.AdminPrefix.
	Admin *http.ServeMux
}

// NewMuxes returns the two muxes, with readiness from health and metrics
// from the runtime's registry.
func (rt *Runtime) NewMuxes(health *httpkit.Health) Muxes {
	return Muxes{Public: httpkit.NewPublicMux(health), Admin: httpkit.NewAdminMux(health, rt.Tel.MetricsHandler())}
}

// ServeMuxes serves m.Public on lns.Public wrapped by EdgeHandler and
// m.Admin on lns.Admin wrapped by Handler, until ctx ends or one of them fails; then both drain
// at once (readiness fails on both, DrainDelay, ShutdownTimeout for
// in-flight requests) and both listeners are closed. A failure of either
// stops the other, so a process never runs with one listener gone.
func (rt *Runtime) ServeMuxes(ctx context.Context, cfg HTTP, lns Listeners, m Muxes, health *httpkit.Health) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	serve := func(name string, ln net.Listener, h http.Handler) <-chan error {
		done := make(chan error, 1)
		go func() {
			rt.Log.InfoContext(ctx, name+" listening", "addr", ln.Addr().String())
			err := httpkit.Serve(ctx, httpkit.ServerConfig{Addr: ln.Addr().String(), DrainDelay: cfg.DrainDelay,
				ShutdownTimeout: cfg.ShutdownTimeout}, ln, h, health, rt.Log)
			if err != nil {
				err = fmt.Errorf("%s: %w", name, err)
			}
			cancel()
			done <- err
		}()
		return done
	}
	pub := serve("http", lns.Public, rt.EdgeHandler(m.Public))
	adm := serve("admin http", lns.Admin, rt.Handler(m.Admin))
	return errors.Join(<-pub, <-adm)
}

// CheckRoles reports each role not in known, in the ROLES variable's
// words.
func CheckRoles(roles, known []string) []error {
	var errs []error
	for _, r := range roles {
		if !slices.Contains(known, r) {
			errs = append(errs, fmt.Errorf("ROLES: unknown role %q (known: %s)", r, strings.Join(known, ", ")))
		}
	}
	if len(roles) == 0 {
		errs = append(errs, fmt.Errorf("ROLES: at least one role is needed (known: %s)", strings.Join(known, ", ")))
	}
	return errs
}

// Canceled turns the error of a wait that ended because ctx ended into nil:
// a role that stops because the command is stopping did not fail.
func Canceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// DLQCommand is `<svc> dlq ...`: the operator's tool for the dead letters
// of the service's consumer groups on streamName (stream.DLQCommand). With
// STREAM_ENGINE=kafka it lists and inspects the topic "<streamName>_DLQ"
// (kafkastream.DLQReader; redrive and discard are JetStream's only, ADR
// 0046) and needs KAFKA_BROKERS. On NATS it needs NATS_URL, and DATABASE_URL for `discard`, which is recorded in the
// service's audit log (pkg/audit) before anything is deleted. It reads
// the dead-letter stream, republishes into the stream and deletes
// messages, which only the operator's NATS user may: run it with
// NATS_USER=operator and the operator's NATS_PASSWORD (ADR 0039; ctl.sh
// exec does).
func DLQCommand(ctx context.Context, name, streamName string, args []string, getenv func(string) string, stdout io.Writer) error {
	engine, err := config.Load[StreamEngine](getenv)
	if err != nil {
		return err
	}
	if engine.Kafka() {
		// ADR 0046: on Kafka the tool lists and inspects the dead-letter
		// topic; redrive and discard are not built there.
		if len(engine.KafkaBrokers) == 0 {
			return errors.New("KAFKA_BROKERS: required by the dlq command with STREAM_ENGINE=kafka")
		}
		q, err := kafkastream.NewDLQReader(engine.seeds(), streamName)
		if err != nil {
			return err
		}
		return stream.DLQCommand(ctx, q, args, stdout)
	}
	cfg, err := config.Load[natsauth.Config](getenv)
	if err != nil {
		return err
	}
	errs := cfg.Validate()
	if cfg.URL == "" {
		errs = append(errs, errors.New("NATS_URL: required by the dlq command"))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	nc, err := cfg.Connect(name + "-dlq")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	q, err := stream.NewDLQ(js, streamName, slog.New(slog.NewJSONHandler(stdout, nil)))
	if err != nil {
		return err
	}
	if len(args) > 0 && args[0] == "discard" {
		// A discard is recorded in the service's audit log (pkg/audit)
		// before the dead letter is deleted.
		db, err := config.Load[pgdb.Config](getenv)
		if err != nil {
			return fmt.Errorf("discard records in the audit log: %w", err)
		}
		pool, err := pgdb.Open(ctx, db)
		if err != nil {
			return fmt.Errorf("discard records in the audit log: %w", err)
		}
		defer pool.Close()
		q = q.WithAudit(func(ctx context.Context, e audit.Entry) error { return audit.Record(ctx, pool, e) })
	}
	return stream.DLQCommand(ctx, q, args, stdout)
}

// Every runs fn every interval (jittered) until ctx ends; failures are
// logged and retried at the next tick, never fatal.
func Every(ctx context.Context, interval time.Duration, fn func(context.Context) error, log *slog.Logger) error {
	for {
		d := interval/2 + rand.N(interval/2+1) //nolint:gosec // G404: jitter, not security
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			log.WarnContext(ctx, "periodic task failed; retrying at the next tick", "err", err)
		}
	}
}

// AuditCommand is `<svc> audit ...`: the service's audit log (pkg/audit:
// discards, purges, abandons; who, when, why), newest first.
func (rt *Runtime) AuditCommand(ctx context.Context, args []string, out io.Writer) error {
	pool, err := rt.OpenPG(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	return audit.Command(ctx, pool, args, out)
}

// OutboxCommand is `<svc> outbox ...`: the operator tool of the service's
// outbox (outbox.Command: parked, unpark, republish) on its own database.
func (rt *Runtime) OutboxCommand(ctx context.Context, args []string, out io.Writer) error {
	pool, err := rt.OpenPG(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	return outbox.Command(ctx, pool, args, out)
}

// ConsumerRetries is the retry budget of the services' consumer groups:
// 10 deliveries, 200ms doubling to 30s apart, about 80s in all, spent only
// by the message's own failures. A handler error that outlasts it
// dead-letters the message and the partition moves on without it.
// Infrastructure errors (the database, the broker, the network:
// stream.IsInfrastructure) never spend it: the partition waits for the
// dependency however long it is away (ADR 0025). Permanent errors are
// dead-lettered at once.
var ConsumerRetries = struct {
	MaxDeliver int
	Backoff    backoff.Policy
}{MaxDeliver: 10, Backoff: backoff.Policy{Initial: 200 * time.Millisecond, Max: 30 * time.Second}}

// PruneInbox is a role that deletes inbox rows older than
// inbox.Retention (31 days), in batches, every hour: no redelivery
// comes later than that (the streams keep a week, their dead-letter
// streams 30 days, and a redrive reaches every group again; a replay of
// older events is a rebuild, which uses its own group).
func (rt *Runtime) PruneInbox(pool *pgxpool.Pool) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		return Every(ctx, time.Hour, func(ctx context.Context) error {
			_, err := inbox.Prune(ctx, pool, inbox.Retention, 1000)
			return err
		}, rt.Log)
	}
}

// QueueCommand is `<svc> queue ...`: the operator tool of the service's job
// queues (jobqueue.DLQCommand: stats, dead letters, redrive, purge) on its
// own database, with the queues' redaction functions.
func (rt *Runtime) QueueCommand(ctx context.Context, redact map[string]func([]byte) []byte, args []string, out io.Writer) error {
	pool, err := rt.OpenPG(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	jobs, err := jobqueue.New(pool, jobqueue.Options{Logger: rt.Log, Redact: redact})
	if err != nil {
		return err
	}
	defer jobs.Close()
	return jobqueue.DLQCommand(ctx, jobs, args, out)
}
