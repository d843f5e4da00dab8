package target

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/pkg/pgroles"
)

// Databases are the service databases run.sh creates (with the prefix).
var Databases = []string{
	"catalog", "orders", "payments", "notifications", "search",
	// new-service: databases above this line
}

// LocalConfig describes an isolated copy of the deploy/local topology:
// its own ports, run directory, databases and Redis database, so that it
// runs beside a developer's `make run` and beside other tests' copies.
type LocalConfig struct {
	// Root is the repository root (deploy/local/ctl.sh is under it).
	Root string
	// PortBase is SHOPFLOOR_PORT_BASE. Keep every port below the
	// ephemeral range (32768+): base + 7432 is the highest.
	PortBase int
	// RunDir is SHOPFLOOR_RUN_DIR (logs, pids, NATS data).
	RunDir string
	// DBPrefix is SHOPFLOOR_DB_PREFIX.
	DBPrefix string
	// RedisDB is SHOPFLOOR_REDIS_DB.
	RedisDB int
	// Env is added to the environment of run.sh and so of every process
	// it starts (SEED_PRODUCTS, LOG_LEVEL, VISIBILITY_TIMEOUT, PATH, …).
	Env []string
	// PostgresURL is an administrative connection to the server, for
	// DropDatabases when the run used a server (run.sh's "server" mode).
	// Default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable.
	PostgresURL string
}

// Local is an isolated local topology, started and stopped with ctl.sh.
type Local struct {
	cfg LocalConfig
	ctl *Ctl
}

// NewLocal prepares (does not start) the topology cfg describes.
func NewLocal(cfg LocalConfig) *Local {
	if cfg.PostgresURL == "" {
		cfg.PostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	env := append([]string{
		"SHOPFLOOR_PORT_BASE=" + strconv.Itoa(cfg.PortBase),
		"SHOPFLOOR_RUN_DIR=" + cfg.RunDir,
		"SHOPFLOOR_DB_PREFIX=" + cfg.DBPrefix,
		"SHOPFLOOR_REDIS_DB=" + strconv.Itoa(cfg.RedisDB),
	}, cfg.Env...)
	return &Local{cfg: cfg, ctl: &Ctl{Script: filepath.Join(cfg.Root, "deploy/local/ctl.sh"), Env: env}}
}

// Up starts every process and returns when all are ready (ctl.sh up).
func (l *Local) Up(ctx context.Context) error { return l.ctl.Up(ctx) }

// Down stops every process (ctl.sh down).
func (l *Local) Down(ctx context.Context) error { return l.ctl.Down(ctx) }

// System returns the system as drills see it. Call it after Up: the
// identity provider's issuer and demo password come from the run
// directory's identity.env, which run.sh writes; when that file cannot be
// read, the System's Token says why.
func (l *Local) System() *System {
	client := &http.Client{Timeout: 10 * time.Second}
	e := LocalEndpoints(l.cfg.PortBase)
	e.DropAbsentInstances(l.cfg.RunDir)
	e.Redis = LocalRedisURL(l.cfg.RedisDB)
	id, err := ReadIdentityEnv(filepath.Join(l.cfg.RunDir, "identity.env"))
	natsPassword, _ := ReadNATSEnv(l.cfg.RunDir) // none: a broker without authorization
	sys := &System{Endpoints: e, Procs: l.ctl, Mail: &SMTPSink{URL: e.Mail, HTTP: client}, HTTP: client,
		Identity: id, identityErr: err, NATSPassword: natsPassword}
	if slices.Contains(l.cfg.Env, "SHOPFLOOR_STREAM_ENGINE=kafka") {
		// deploy/local/ports.sh's KAFKA_PORT (deploy/kfake).
		sys.KafkaBrokers = []string{"127.0.0.1:" + strconv.Itoa(l.cfg.PortBase+1092)}
	}
	return sys
}

// DropDatabases removes the topology's data (stop it first): the run's
// own PostgreSQL cluster (run.sh's "own" mode, postgres.env in the run
// directory) is deleted with its data directory; on a shared server the
// databases are dropped (WITH (FORCE) ends connections left over), and
// their roles.
func (l *Local) DropDatabases(ctx context.Context) error {
	if env, err := readEnvFile(filepath.Join(l.cfg.RunDir, "postgres.env")); err == nil && env["PG_MODE"] == "own" {
		var errs []error
		for _, dir := range []string{env["PG_DATA"], filepath.Join(l.cfg.RunDir, "pg")} {
			if dir != "" {
				errs = append(errs, os.RemoveAll(dir))
			}
		}
		return errors.Join(errs...)
	}
	var errs []error
	for _, db := range Databases {
		// The database and its roles (ADR 0040).
		if err := pgroles.Drop(ctx, l.cfg.PostgresURL, pgroles.For(l.cfg.DBPrefix, db, "", "")); err != nil {
			errs = append(errs, fmt.Errorf("drop databases: %w", err))
		}
	}
	return errors.Join(errs...)
}

// LogTails returns the last max bytes of every process log, for a failed
// test's output.
func (l *Local) LogTails(maxBytes int) string {
	logs, _ := filepath.Glob(filepath.Join(l.cfg.RunDir, "logs", "*.log"))
	var b strings.Builder
	for _, f := range logs {
		data, err := os.ReadFile(f) //nolint:gosec // G304: the run directory's own logs
		if err != nil {
			continue
		}
		if len(data) > maxBytes {
			data = data[len(data)-maxBytes:]
		}
		fmt.Fprintf(&b, "--- %s (tail)\n%s\n", filepath.Base(f), data)
	}
	return b.String()
}
