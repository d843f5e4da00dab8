package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/config"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/lifecycle"
	"github.com/shopfloor/shopfloor/pkg/natsauth"
)

// Program is a service's command table: every cmd/<svc>/run.go declares
// one and calls its Run. What every service repeats happens here, once:
// loading and checking the configuration, telemetry, the two listeners,
// the PostgreSQL pool, the API gate, the operator commands that every
// service with a database has, and supervising the roles.
//
// The commands of every service, in the order `<svc> help` lists them:
//
//	serve     the roles in ROLES (the default command)
//	migrate   apply the migrations             (with Migrations)
//	audit     the audit log                    (with Migrations)
//	outbox    parked outbox rows               (with Outbox)
//	queue     job queues and their DLQs        (with Queues)
//	dlq       stream dead letters, --stream S  (with Streams)
//	...       the service's own Commands
//	help      the command and role list
type Program[C any] struct {
	// Name is the service's name: the binary, telemetry's service.name,
	// the default AUTH_AUDIENCE.
	Name string
	// Port is the default public port: HTTP_ADDR defaults to ":Port",
	// ADMIN_ADDR to ":Port+1000" (ADR 0023).
	Port int
	// Roles the serve command knows; ROLES defaults to all of them, in
	// this order.
	Roles []Role
	// Migrations gives the service a database: serve connects the pool
	// before Wire and reports "postgres" on /readyz, and the migrate and
	// audit commands exist.
	Migrations fs.FS
	// Outbox adds the outbox command (pkg/outbox's operator tool).
	Outbox bool
	// Queues, when set, adds the queue command with these redaction
	// functions per queue (pkg/jobqueue's operator tool).
	Queues func() map[string]func([]byte) []byte
	// Streams adds the dlq command for the dead letters of the service's
	// consumer groups on these streams; with more than one, --stream is
	// required.
	Streams []string
	// Defaults override the envDefault of variables declared in shared
	// structs (Jobs' WORKER_CONCURRENCY, for one) for this service.
	Defaults map[string]string
	// Commands are the service's own commands, listed after the standard
	// ones.
	Commands []Command
	// Edge, when set, mounts what must answer before any dependency is up
	// (routes that need no database) on app.Muxes, or replaces them. It
	// runs before the listeners serve.
	Edge func(ctx context.Context, app *App, cfg *C) error
	// Wire builds the roles once the database is connected (at once
	// without Migrations): it opens the API gate (App.OpenAPI) and adds
	// each role's tasks (App.Go). The API answers 503 with Retry-After
	// until then.
	Wire func(ctx context.Context, app *App, cfg *C) error
}

// Role is one role of a serve command, named in ROLES.
type Role struct {
	Name string
	// NATS: the role uses the streams, so the engine's address is
	// required (NATS_URL, or KAFKA_BROKERS with STREAM_ENGINE=kafka) and
	// /readyz waits for the engine.
	NATS bool
	Doc  string
}

// The role names every service uses for the same kind of work.
const (
	RoleAPI      = "api"      // the HTTP API
	RoleRelay    = "relay"    // the outbox relay (one leader at a time)
	RoleConsumer = "consumer" // consumer groups on other services' streams
	RoleWorker   = "worker"   // job queue workers
)

// Command is one of a service's own commands.
type Command struct {
	Name string
	// Args is the argument synopsis shown by help, e.g. "--products N".
	Args string
	Doc  string
	Run  func(ctx context.Context, inv *Invocation) error
}

// Invocation is what a command gets: its arguments (after the command
// name), the environment and the output.
type Invocation struct {
	Args   []string
	Getenv func(string) string
	Stdout io.Writer
	name   string
	rt     *Runtime
}

// Runtime loads the database and telemetry configuration (Base) and
// starts the service's telemetry; Program.Run closes it when the command
// ends.
func (inv *Invocation) Runtime(ctx context.Context) (*Runtime, error) {
	if inv.rt != nil {
		return inv.rt, nil
	}
	base, err := config.Load[Base](inv.Getenv)
	if err != nil {
		return nil, err
	}
	inv.rt, err = Start(ctx, inv.name, base, inv.Stdout)
	return inv.rt, err
}

// Pool starts the runtime and connects to the service's database; close
// the pool when done.
func (inv *Invocation) Pool(ctx context.Context) (*pgxpool.Pool, error) {
	rt, err := inv.Runtime(ctx)
	if err != nil {
		return nil, err
	}
	return rt.OpenPG(ctx)
}

// Serve is the part of a serve command's configuration every service
// has. Services embed it next to Base (or Telemetry, without a database).
type Serve struct {
	HTTP
	// HTTPAddr is the public listener: the API, /healthz and a /readyz
	// without details. Default ":" + Program.Port.
	HTTPAddr string `env:"HTTP_ADDR"`
	// AdminAddr is the admin listener: /metrics, /readyz details and the
	// admin API under /v1/admin. Never publish it (ADR 0023). Default
	// ":" + (Program.Port + 1000).
	AdminAddr string `env:"ADMIN_ADDR"`
	// AdminPprof serves Go's profiles (net/http/pprof) on the admin
	// listener under /debug/pprof/ (ADMIN_PPROF, default off). Profiles
	// show code paths and stacks, not data, but a goroutine dump names
	// what each request is doing: operators only, like the rest of the
	// listener. make run turns it on (profiling the whole topology under
	// load, docs/benchmarks.md).
	AdminPprof bool `env:"ADMIN_PPROF"`
	// Roles run in this process. Default: every role of the Program.
	Roles []string `env:"ROLES"`
	// ConsumerMaxBatch is how many messages of one partition the
	// service's batch consumer groups hand their handler at once
	// (CONSUMER_MAX_BATCH, 1 to stream.MaxBatchLimit, default 32; ADR
	// 0017, ADR 0044). A batch takes what the partition has ready and
	// never waits to fill, so at a low rate batches are of one message;
	// under load they grow and the whole batch costs one commit. 1 turns
	// batching off.
	ConsumerMaxBatch int `env:"CONSUMER_MAX_BATCH" envDefault:"32"`
	// NATS is the server and the service's NATS user (NATS_URL,
	// NATS_USER, NATS_PASSWORD; ADR 0039). NATS_URL is required by the
	// roles that use the streams.
	NATS natsauth.Config
	// StreamEngine is the engine of the streams (STREAM_ENGINE=nats, the
	// default, or kafka with KAFKA_BROKERS; ADR 0046).
	StreamEngine StreamEngine
	// Auth is the identity provider whose access tokens the api role
	// accepts (AUTH_ISSUER; AUTH_AUDIENCE defaults to the service's name).
	Auth auth.Config
	// RateLimit is the public API's per-caller limits (RATE_LIMIT_*).
	RateLimit RateLimit
}

// Has reports whether role is one of the process's roles.
func (s *Serve) Has(role string) bool { return slices.Contains(s.Roles, role) }

func (s *Serve) serving() *Serve { return s }

func (b Base) base() Base      { return b }
func (t Telemetry) base() Base { return Base{Telemetry: t} }

type serveConfig interface{ serving() *Serve }
type baseConfig interface{ base() Base }

// Run runs the command args[1] names (serve when none does).
func (p Program[C]) Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cmd := "serve"
	if len(args) > 1 {
		cmd = args[1]
	}
	inv := &Invocation{Args: args[min(2, len(args)):], Getenv: getenv, Stdout: stdout, name: p.Name}
	defer func() {
		if inv.rt != nil {
			inv.rt.Close(ctx)
		}
	}()
	for _, c := range p.commands() {
		if c.Name == cmd {
			return c.Run(ctx, inv)
		}
	}
	return fmt.Errorf("unknown command %q (usage: %s [command] [arguments]; '%s help' lists the commands)", cmd, p.Name, p.Name)
}

// commands is the command table: the standard commands the Program's
// fields ask for, then the service's own, then help.
func (p Program[C]) commands() []Command {
	serveDoc := "run the service (the default command)"
	if len(p.Roles) > 0 {
		serveDoc = "run the roles in ROLES (the default command)"
	}
	cmds := []Command{{Name: "serve", Doc: serveDoc, Run: p.serveCommand}}
	if p.Migrations != nil {
		cmds = append(cmds,
			Command{Name: "migrate", Doc: "apply the database migrations (one migrator at a time)", Run: func(ctx context.Context, inv *Invocation) error {
				rt, err := inv.Runtime(ctx)
				if err != nil {
					return err
				}
				return rt.Migrate(ctx, p.Migrations)
			}},
			Command{Name: "audit", Args: "...", Doc: "the audit log: who discarded, purged or abandoned what, and why", Run: func(ctx context.Context, inv *Invocation) error {
				rt, err := inv.Runtime(ctx)
				if err != nil {
					return err
				}
				return rt.AuditCommand(ctx, inv.Args, inv.Stdout)
			}})
	}
	if p.Outbox {
		cmds = append(cmds, Command{Name: "outbox", Args: "...", Doc: "parked outbox rows: parked | unpark | republish", Run: func(ctx context.Context, inv *Invocation) error {
			rt, err := inv.Runtime(ctx)
			if err != nil {
				return err
			}
			return rt.OutboxCommand(ctx, inv.Args, inv.Stdout)
		}})
	}
	if p.Queues != nil {
		cmds = append(cmds, Command{Name: "queue", Args: "...", Doc: "job queues: stats, dead letters, redrive, purge", Run: func(ctx context.Context, inv *Invocation) error {
			rt, err := inv.Runtime(ctx)
			if err != nil {
				return err
			}
			return rt.QueueCommand(ctx, p.Queues(), inv.Args, inv.Stdout)
		}})
	}
	if len(p.Streams) > 0 {
		cmds = append(cmds, Command{Name: "dlq", Args: p.dlqArgs(),
			Doc: "dead letters of this service's consumer groups: list | inspect | redrive | discard", Run: p.dlqCommand})
	}
	cmds = append(cmds, p.Commands...)
	return append(cmds, Command{Name: "help", Doc: "this list", Run: func(_ context.Context, inv *Invocation) error {
		return p.Help(inv.Stdout)
	}})
}

func (p Program[C]) dlqArgs() string {
	if len(p.Streams) == 1 {
		return "[--stream " + p.Streams[0] + "] ..."
	}
	return "--stream " + strings.Join(p.Streams, "|") + " ..."
}

// dlqCommand is `<svc> dlq [--stream S] ...` (DLQCommand).
func (p Program[C]) dlqCommand(ctx context.Context, inv *Invocation) error {
	name, args := "", inv.Args
	switch {
	case len(args) >= 2 && args[0] == "--stream":
		name, args = args[1], args[2:]
	case len(args) >= 1 && strings.HasPrefix(args[0], "--stream="):
		name, args = strings.TrimPrefix(args[0], "--stream="), args[1:]
	}
	if name == "" && len(p.Streams) == 1 {
		name = p.Streams[0]
	}
	if !slices.Contains(p.Streams, name) {
		return fmt.Errorf("dlq --stream: must be %s (got %q; usage: %s dlq %s)", strings.Join(p.Streams, " or "), name, p.Name, p.dlqArgs())
	}
	return DLQCommand(ctx, p.Name, name, args, inv.Getenv, inv.Stdout)
}

// Help writes the command list and the roles, the same shape for every
// service: each command with its arguments, its description indented
// below it (the style of Go's flag package), then the roles.
func (p Program[C]) Help(out io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: %s [command] [arguments]\n\ncommands:\n", p.Name)
	for _, c := range p.commands() {
		fmt.Fprintf(&b, "  %s\n        %s\n", strings.TrimSpace(c.Name+" "+c.Args), c.Doc)
	}
	if len(p.Roles) > 0 {
		fmt.Fprintf(&b, "\nroles (ROLES, default %s):\n", strings.Join(p.roleNames(), ","))
		tw := tabwriter.NewWriter(&b, 2, 8, 2, ' ', 0)
		for _, r := range p.Roles {
			fmt.Fprintf(tw, "  %s\t%s\n", r.Name, r.Doc)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := io.WriteString(out, b.String())
	return err
}

func (p Program[C]) roleNames() []string {
	names := make([]string, len(p.Roles))
	for i, r := range p.Roles {
		names[i] = r.Name
	}
	return names
}

// defaults are the variables whose defaults come from the Program, not
// from a tag: the addresses, the roles and Program.Defaults.
func (p Program[C]) defaults(getenv func(string) string) func(string) string {
	d := map[string]string{"HTTP_ADDR": ":" + strconv.Itoa(p.Port), "ADMIN_ADDR": ":" + strconv.Itoa(p.Port+1000),
		"ROLES": strings.Join(p.roleNames(), ",")}
	maps.Copy(d, p.Defaults)
	return func(k string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return d[k]
	}
}

// load reads the serve command's configuration: the service's own checks
// (its Validate) and the ones every service shares, reported together.
func (p Program[C]) load(getenv func(string) string) (*C, *Serve, error) {
	cfg, err := config.Load[C](p.defaults(getenv))
	var cerr *config.Error
	if err != nil && !errors.As(err, &cerr) {
		return nil, nil, err
	}
	sc, ok := any(&cfg).(serveConfig)
	if !ok {
		return nil, nil, fmt.Errorf("%s: %T does not embed service.Serve", p.Name, cfg)
	}
	sv := sc.serving()
	problems := p.check(sv)
	if cerr != nil {
		problems = append(problems, cerr.Problems...)
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return nil, nil, &config.Error{Problems: slices.Compact(problems)}
	}
	return &cfg, sv, nil
}

// check is what every serve command requires: known roles, NATS_URL for
// the roles that use the streams (and NATS credentials that go
// together), an identity provider for the api role.
func (p Program[C]) check(sv *Serve) []string {
	var problems []string
	if len(p.Roles) > 0 {
		for _, err := range CheckRoles(sv.Roles, p.roleNames()) {
			problems = append(problems, err.Error())
		}
	}
	var streams []string
	for _, r := range p.Roles {
		if r.NATS {
			streams = append(streams, r.Name)
		}
	}
	for _, err := range append(sv.NATS.Validate(), sv.StreamEngine.Validate()...) {
		problems = append(problems, err.Error())
	}
	if slices.ContainsFunc(streams, sv.Has) {
		what := "the " + strings.Join(streams, " and ") + " role"
		if len(streams) > 1 {
			what += "s"
		}
		switch {
		case sv.StreamEngine.Kafka() && len(sv.StreamEngine.KafkaBrokers) == 0:
			problems = append(problems, "KAFKA_BROKERS: required by "+what+" with STREAM_ENGINE=kafka")
		case sv.StreamEngine.Engine == EngineNATS && sv.NATS.URL == "":
			problems = append(problems, "NATS_URL: required by "+what)
		}
	}
	if sv.Has(RoleAPI) {
		for _, err := range sv.Auth.Validate() {
			problems = append(problems, err.Error())
		}
	}
	for _, err := range sv.RateLimit.Validate() {
		problems = append(problems, err.Error())
	}
	return problems
}

// serveCommand is `<svc> serve`: the listeners at once, the roles once
// their dependencies answer.
func (p Program[C]) serveCommand(ctx context.Context, inv *Invocation) error {
	cfg, sv, err := p.load(inv.Getenv)
	if err != nil {
		return err
	}
	bc, ok := any(cfg).(baseConfig)
	if !ok {
		return fmt.Errorf("%s: %T embeds neither service.Base nor service.Telemetry", p.Name, *cfg)
	}
	rt, err := Start(ctx, p.Name, bc.base(), inv.Stdout)
	if err != nil {
		return err
	}
	inv.rt = rt
	lns, err := Listen(sv.HTTPAddr, sv.AdminAddr)
	if err != nil {
		return err
	}
	app, err := p.newApp(rt, sv, lns)
	if err == nil && p.Edge != nil {
		err = p.Edge(ctx, app, cfg)
	}
	if err != nil {
		return errors.Join(err, lns.Close())
	}
	g := lifecycle.NewGroup(rt.Log)
	g.Add("app", func(ctx context.Context) error { return p.runApp(ctx, app, cfg) })
	g.Add("http", func(ctx context.Context) error {
		return rt.ServeMuxes(ctx, sv.HTTP, lns, app.Muxes, app.Health)
	})
	return g.Run(ctx)
}

// newApp sets up what the listeners serve before any dependency is up:
// health with the checks the roles need, the two muxes, and the API gate
// on /v1/ of both (the public mux answers 404 for /v1/admin, the admin
// API is served on the admin listener only), behind the per-caller rate
// limits on the public one.
func (p Program[C]) newApp(rt *Runtime, sv *Serve, lns Listeners) (*App, error) {
	app := &App{Runtime: rt, Health: httpkit.NewHealth(), Listeners: lns, serve: sv, tasks: lifecycle.NewGroup(rt.Log)}
	if p.Migrations != nil {
		app.Health.AddCheck("postgres", rt.PG.Check)
	}
	for _, r := range p.Roles {
		switch {
		case !r.NATS || !sv.Has(r.Name):
		case sv.StreamEngine.Kafka():
			rt.RequireKafka(app.Health)
		default:
			rt.RequireNATS(app.Health)
		}
	}
	app.Muxes = rt.NewMuxes(app.Health)
	if sv.AdminPprof {
		httpkit.MountPprof(app.Muxes.Admin)
	}
	var err error
	if app.Authz, err = rt.APIVerifier(sv.Auth, sv.Has(RoleAPI), app.Health); err != nil {
		return nil, err
	}
	if app.Limits, err = NewLimits(sv.RateLimit, app.Authz, rt.Tel.Registry); err != nil {
		return nil, err
	}
	if p.Wire != nil {
		app.gate = NewGate(p.Name)
		app.Muxes.Public.Handle("/v1/", app.Limits.Handler("/v1/", app.gate))
		app.Muxes.Admin.Handle(httpkit.AdminPrefix, app.gate)
	}
	return app, nil
}

// runApp connects the database, wires the roles and runs their tasks
// until ctx ends; what Wire deferred runs last.
func (p Program[C]) runApp(ctx context.Context, app *App, cfg *C) error {
	defer app.close()
	if p.Migrations != nil {
		pool, err := app.OpenPG(ctx)
		if err != nil {
			return Canceled(err)
		}
		app.Pool = pool
		app.Defer(pool.Close)
	}
	if p.Wire != nil {
		if err := p.Wire(ctx, app, cfg); err != nil {
			return Canceled(err)
		}
	}
	app.tasks.Add("wait", func(ctx context.Context) error { <-ctx.Done(); return nil })
	return app.tasks.Run(ctx)
}

// Main is a service's main: it runs the command os.Args names until
// SIGINT or SIGTERM, and exits 1 with the error on stderr when it fails.
func (p Program[C]) Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := p.Run(ctx, os.Args, os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, p.Name+":", err)
		os.Exit(1)
	}
}
