package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shopfloor/shopfloor/chaos/drill"
	"github.com/shopfloor/shopfloor/chaos/target"
	"github.com/shopfloor/shopfloor/pkg/natsauth"
)

// Exit codes: 1 an invariant was violated, 2 bad usage, 3 a drill could
// not run (system unreachable, interrupted, a fault could not be healed).
var (
	errViolated = errors.New("invariants violated")
	errUsage    = errors.New("usage")
)

const usage = `chaos: drills that break a running shopfloor and report which invariants held.

  chaos list                                 the drills: fault, what they prove, resource, runbook page
  chaos run [flags] DRILL... | all           run drills one after the other; writes a JSON and a
                                             Markdown report per drill (--report-dir) and, for
                                             several drills, one table of drill × invariant

Start the system first (make start, or docker compose with deploy/compose/compose.chaos.yaml).
Drills sign in at its identity provider: a local run's identity.env, or --issuer and --demo-password.
Exit status: 0 every invariant held, 1 one was violated, 2 bad usage, 3 a drill could not run.

flags of run:
`

// config is everything run reads from flags and the environment.
type config struct {
	duration, faultFor, deadline time.Duration
	rate                         float64
	customers                    int
	runner                       string // local | compose
	portBase                     int
	runDir                       string
	composeFiles                 string
	mail                         string // smtpsink | mailpit
	issuer, demoPassword         string
	urls                         urlFlags
	seed                         int64  // the game day's schedule; 0: random
	reportDir                    string // "": chaos/reports/<UTC timestamp>
}

// urlFlags collects --url NAME=URL overrides.
type urlFlags map[string]string

func (u urlFlags) String() string { return "" }

func (u urlFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if k == "redis" && strings.HasPrefix(v, "redis://") {
		u[k] = v
		return nil
	}
	if !ok || k == "" || !strings.HasPrefix(v, "http") {
		return fmt.Errorf("want NAME=http://host:port (redis=redis://host:port/db), got %q", s)
	}
	u[k] = strings.TrimSuffix(v, "/")
	return nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) < 2 {
		fmt.Fprint(stdout, usage)
		return fmt.Errorf("%w: a command is required (list, run)", errUsage)
	}
	switch args[1] {
	case "list":
		return list(stdout)
	case "run":
		return runDrills(ctx, args[2:], getenv, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		flags(&config{urls: urlFlags{}}, getenv, stdout).PrintDefaults()
		return nil
	}
	fmt.Fprint(stdout, usage)
	return fmt.Errorf("%w: unknown command %q", errUsage, args[1])
}

// list prints each drill: its fault, what it proves, the resource it
// breaks (and whether the game day may pick it) and its runbook page.
func list(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, d := range drill.All() {
		res := d.Resource
		if res == "" {
			res = "–"
		}
		if d.GameDay {
			res += " (game day: yes)"
		}
		fmt.Fprintf(tw, "%s\tfault:\t%s\n\tproves:\t%s\n\tresource:\t%s\n\trunbook:\t%s\n", d.Name, d.Fault, d.Proves, res, drill.Runbook(d.Name))
		if d.NoCompose != "" {
			fmt.Fprintf(tw, "\tcompose:\tnot supported: %s\n", d.NoCompose)
		}
	}
	return tw.Flush()
}

func envOr(getenv func(string) string, k, def string) string {
	if v := getenv(k); v != "" {
		return v
	}
	return def
}

func flags(c *config, getenv func(string) string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("chaos run", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.DurationVar(&c.duration, "duration", 60*time.Second, "how long checkout load runs")
	fs.DurationVar(&c.faultFor, "fault-for", 0, "how long the fault lasts, centred in the load (default duration/2)")
	fs.Float64Var(&c.rate, "rate", 20, "checkouts started per second")
	fs.IntVar(&c.customers, "customers", 10, "customers placing the orders")
	fs.DurationVar(&c.deadline, "deadline", 3*time.Minute, "how long to wait for convergence after the load")
	fs.StringVar(&c.runner, "runner", envOr(getenv, "CHAOS_RUNNER", "local"), "how processes are killed and started: local (deploy/local/ctl.sh) or compose (docker compose); env CHAOS_RUNNER")
	base, err := strconv.Atoi(envOr(getenv, "SHOPFLOOR_PORT_BASE", "8000"))
	if err != nil {
		base = -1 // refused by validate
	}
	fs.IntVar(&c.portBase, "port-base", base, "port base of the topology (deploy/local/ports.sh; compose with deploy/compose/compose.chaos.yaml: 8000); env SHOPFLOOR_PORT_BASE")
	fs.StringVar(&c.runDir, "run-dir", getenv("SHOPFLOOR_RUN_DIR"), "local runner: the run directory (default <repository>/.run); env SHOPFLOOR_RUN_DIR")
	fs.StringVar(&c.composeFiles, "compose-files", "deploy/compose/compose.yaml,deploy/compose/compose.chaos.yaml", "compose runner: the compose files, comma-separated")
	fs.StringVar(&c.mail, "mail", "", "mail catcher API: smtpsink (local) or mailpit (compose); default by runner")
	fs.StringVar(&c.issuer, "issuer", getenv("IDENTITY_ISSUER"), "the identity provider's issuer URL (local runner: default from the run directory's identity.env; compose: "+composeIssuer+"); env IDENTITY_ISSUER")
	fs.StringVar(&c.demoPassword, "demo-password", getenv("IDENTITY_DEMO_PASSWORD"), "the demo users' password (local runner: default from the run directory's identity.env; compose: SHOPFLOOR_DEMO_PASSWORD of deploy/compose/.env); env IDENTITY_DEMO_PASSWORD")
	fs.Int64Var(&c.seed, "seed", 0, "game-day: the seed of the fault schedule (the same seed, --duration, --fault-for and drills give the same schedule); default a random one, printed")
	fs.StringVar(&c.reportDir, "report-dir", "", "where each drill's JSON and Markdown report go (and summary.md for several drills); default chaos/reports/<UTC timestamp> in the repository")
	fs.Var(c.urls, "url", "override one base URL, NAME=URL (NAME: cdn, catalog, catalog-admin, orders, payments, notifications, search, psp, mail, toxiproxy, nats-monitor, or metrics.PROCESS; redis=redis://host:port/db, the topology's Redis database); repeatable")
	return fs
}

func (c *config) validate() error {
	var errs []error
	if c.duration < 5*time.Second {
		errs = append(errs, errors.New("--duration must be at least 5s"))
	}
	if c.faultFor < 0 || c.faultFor > c.duration {
		errs = append(errs, errors.New("--fault-for must be between 0 and --duration"))
	}
	if c.rate <= 0 || c.rate > 500 {
		errs = append(errs, errors.New("--rate must be in (0, 500]"))
	}
	if c.customers < 1 {
		errs = append(errs, errors.New("--customers must be at least 1"))
	}
	if c.deadline <= 0 {
		errs = append(errs, errors.New("--deadline must be positive"))
	}
	if c.portBase < 7000 || c.portBase > 58000 {
		errs = append(errs, errors.New("--port-base (SHOPFLOOR_PORT_BASE) must be a number in 7000..58000"))
	}
	if c.runner != "local" && c.runner != "compose" {
		errs = append(errs, fmt.Errorf("--runner must be local or compose, not %q", c.runner))
	}
	if c.mail == "" {
		c.mail = map[string]string{"local": "smtpsink", "compose": "mailpit"}[c.runner]
	}
	if c.mail != "smtpsink" && c.mail != "mailpit" {
		errs = append(errs, fmt.Errorf("--mail must be smtpsink or mailpit, not %q", c.mail))
	}
	return errors.Join(errs...)
}

// system builds the target from the configuration.
func (c *config) system() (*target.System, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	e := target.LocalEndpoints(c.portBase)
	fields := map[string]*string{"cdn": &e.CDN, "catalog": &e.Catalog, "catalog-admin": &e.CatalogAdmin, "orders": &e.Orders, "payments": &e.Payments,
		"notifications": &e.Notifications, "search": &e.Search, "psp": &e.PSP, "mail": &e.Mail, "toxiproxy": &e.Toxiproxy,
		"nats-monitor": &e.NATSMonitor, "redis": &e.Redis}
	if err := c.redis(&e); err != nil {
		return nil, err
	}
	for k, v := range c.urls {
		if p, ok := strings.CutPrefix(k, "metrics."); ok {
			if _, known := e.Metrics[p]; !known {
				return nil, fmt.Errorf("%w: --url %s: no process %q", errUsage, k, p)
			}
			e.Metrics[p] = v
			continue
		}
		f, ok := fields[k]
		if !ok {
			return nil, fmt.Errorf("%w: --url %s: unknown name", errUsage, k)
		}
		*f = v
	}
	id, err := c.identity()
	if err != nil {
		return nil, err
	}
	sys := &target.System{Endpoints: e, HTTP: client, Identity: id}
	if c.mail == "mailpit" {
		sys.Mail = &target.Mailpit{URL: e.Mail, HTTP: client}
	} else {
		sys.Mail = &target.SMTPSink{URL: e.Mail, HTTP: client}
	}
	switch c.runner {
	case "compose":
		// The operator's NATS password: drills connect with it, and
		// operator commands run in the containers with it.
		sys.NATSPassword, _ = dotenv("deploy/compose/.env", natsauth.PasswordVar(target.NATSOperator))
		// Operator commands run as their database's owner (ADR 0040).
		owners := target.ComposeDatabaseOwners(func(k string) (string, error) { return dotenv("deploy/compose/.env", k) })
		sys.Procs = &target.Compose{Files: strings.Split(c.composeFiles, ","), NATSPassword: sys.NATSPassword, DatabaseOwners: owners}
	default:
		root, err := repoRoot()
		if err != nil {
			return nil, err
		}
		env := []string{"SHOPFLOOR_PORT_BASE=" + strconv.Itoa(c.portBase)}
		if c.runDir != "" {
			env = append(env, "SHOPFLOOR_RUN_DIR="+c.runDir)
		}
		sys.Procs = &target.Ctl{Script: filepath.Join(root, "deploy/local/ctl.sh"), Env: env}
		dir := c.runDir
		if dir == "" {
			dir = filepath.Join(root, ".run")
		}
		sys.DropAbsentInstances(dir) // SHOPFLOOR_CONSUMER_INSTANCES=1: no second instances
		// No nats.env: a broker without authorization.
		sys.NATSPassword, _ = target.ReadNATSEnv(dir)
	}
	return sys, nil
}

// redis sets the topology's Redis database: compose's published one
// (with REDIS_PASSWORD of deploy/compose/.env), or the local run
// directory's redis.env (--url redis= overrides either). A run whose
// settings are not found leaves it unknown: only redis-flush needs it,
// and it says so.
func (c *config) redis(e *target.Endpoints) error {
	if c.runner == "compose" {
		if pw, err := dotenv("deploy/compose/.env", "REDIS_PASSWORD"); err == nil {
			e.Redis = target.ComposeRedisURL(pw)
		}
		return nil
	}
	dir := c.runDir
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return err
		}
		dir = filepath.Join(root, ".run")
	}
	if u, err := target.ReadRedisEnv(dir); err == nil {
		e.Redis = u
	}
	return nil
}

// composeIssuer is the sandbox provider's issuer in docker compose.
const composeIssuer = "http://localhost:8090"

// identity is where the drills sign in: --issuer and --demo-password (or
// their variables) win; what they leave out comes from the local run's
// identity.env (deploy/local/run.sh writes it) or, for compose, from the
// compose defaults (the issuer http://localhost:8090 and
// SHOPFLOOR_DEMO_PASSWORD of deploy/compose/.env).
func (c *config) identity() (target.Identity, error) {
	id := target.Identity{Issuer: c.issuer, DemoPassword: c.demoPassword}
	if id.Issuer != "" && id.DemoPassword != "" {
		return id, nil
	}
	var def target.Identity
	if c.runner == "compose" {
		def.Issuer = composeIssuer
		pw, err := dotenv("deploy/compose/.env", "SHOPFLOOR_DEMO_PASSWORD")
		if err != nil && id.DemoPassword == "" {
			return id, fmt.Errorf("%w: the demo password: pass --demo-password (IDENTITY_DEMO_PASSWORD), or run from the repository with deploy/compose/.env: %w", errUsage, err)
		}
		def.DemoPassword = pw
	} else {
		dir := c.runDir
		if dir == "" {
			root, err := repoRoot()
			if err != nil {
				return id, err
			}
			dir = filepath.Join(root, ".run")
		}
		var err error
		if def, err = target.ReadIdentityEnv(filepath.Join(dir, "identity.env")); err != nil {
			return id, fmt.Errorf("%w: is the system running (make start)? Otherwise pass --issuer and --demo-password", err)
		}
	}
	if id.Issuer == "" {
		id.Issuer = def.Issuer
	}
	if id.DemoPassword == "" {
		id.DemoPassword = def.DemoPassword
	}
	return id, nil
}

// dotenv returns the value of key in a NAME=value file such as compose's
// .env.
func dotenv(path, key string) (string, error) {
	b, err := os.ReadFile(path) //nolint:gosec // G304: compose's own .env
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+"="); ok && v != "" {
			return strings.Trim(v, `"'`), nil
		}
	}
	return "", fmt.Errorf("%s has no %s", path, key)
}

// repoRoot finds deploy/local/ctl.sh in the working directory or above.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "deploy/local/ctl.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("deploy/local/ctl.sh not found: run chaos from the repository (or use --runner compose)")
		}
		dir = parent
	}
}

func runDrills(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	c := &config{urls: urlFlags{}}
	fs := flags(c, getenv, stdout)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if err := c.validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: name at least one drill (chaos list), or all", errUsage)
	}
	drills, err := drill.Lookup(fs.Args()...)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	sys, err := c.system()
	if err != nil {
		return err
	}
	dir, err := c.reports(time.Now())
	if err != nil {
		return err
	}
	if c.seed == 0 {
		c.seed = drill.RandomSeed()
	}
	for _, d := range drills {
		if d.Name == drill.GameDayName {
			fmt.Fprintf(stdout, "game-day seed %d (repeat the schedule with --seed %d and the same --duration and --fault-for)\n", c.seed, c.seed)
			break
		}
	}
	cfg := drill.Config{Duration: c.duration, FaultFor: c.faultFor, Rate: c.rate, Customers: c.customers, Deadline: c.deadline, Seed: c.seed, Log: stdout}
	var (
		reps    []drill.Report
		runErr  error
		written = map[string]int{}
	)
	for _, d := range drills {
		rep, err := drill.Execute(ctx, sys, d, cfg)
		if err != nil {
			rep.Err = err.Error()
			runErr = err
		} else if err := rep.Write(stdout); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		reps = append(reps, rep)
		// A drill named twice gets <name>-2, <name>-3, … files.
		written[d.Name]++
		name := d.Name
		if n := written[d.Name]; n > 1 {
			name = fmt.Sprintf("%s-%d", d.Name, n)
		}
		paths, werr := rep.WriteFiles(dir, name)
		if werr != nil {
			return errors.Join(runErr, werr)
		}
		fmt.Fprintf(stdout, "report: %s\n", strings.Join(paths, ", "))
		if runErr != nil {
			break // the system may be broken: the next drill would prove nothing
		}
	}
	if len(drills) > 1 {
		m := drill.Matrix(reps)
		fmt.Fprintf(stdout, "\nsummary (%d of %d drills ran):\n\n%s", len(reps), len(drills), m)
		page := fmt.Sprintf("# Chaos run %s\n\n%d of %d drills ran; each drill's report is <drill>.md and <drill>.json beside this page.\n\n%s",
			filepath.Base(dir), len(reps), len(drills), m)
		if err := os.WriteFile(filepath.Join(dir, "summary.md"), []byte(page), 0o600); err != nil {
			return errors.Join(runErr, fmt.Errorf("summary: %w", err))
		}
		fmt.Fprintf(stdout, "summary: %s\n", filepath.Join(dir, "summary.md"))
	}
	if runErr != nil {
		return runErr
	}
	for _, rep := range reps {
		if rep.Violated() {
			return errViolated
		}
	}
	return nil
}

// reports is the report directory: --report-dir, or
// chaos/reports/<UTC timestamp> in the repository (in the working
// directory when run outside it). It is created by the first report.
func (c *config) reports(now time.Time) (string, error) {
	if c.reportDir != "" {
		return c.reportDir, nil
	}
	root, err := repoRoot()
	if err != nil {
		if root, err = os.Getwd(); err != nil {
			return "", fmt.Errorf("report directory: %w", err)
		}
	}
	return filepath.Join(root, "chaos", "reports", now.UTC().Format("20060102T150405Z")), nil
}
