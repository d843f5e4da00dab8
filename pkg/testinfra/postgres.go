package testinfra

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"

	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/pgroles"
)

// PostgresImage is the image testcontainers starts when no address is set.
const PostgresImage = "postgres:16-alpine"

// Database is a test's own database.
type Database struct {
	// Pool is connected to the test's database and closed when the test ends.
	Pool *pgxpool.Pool
	// URL connects to the test's database; use it to open more pools or to
	// hand the database to a service under test.
	URL string
	// Name is the database name, unique to the test.
	Name string
	// OwnerURL connects as the database's owner role, for the migrate
	// command and schema changes (PostgresRoles only; empty otherwise:
	// URL is the superuser's and does everything).
	OwnerURL string
}

// Postgres returns a new database for this test, cloned from a template that
// has migrations applied (nil migrations: an empty database). The database is
// dropped when the test ends.
func Postgres(tb testing.TB, migrations fs.FS) *Database {
	tb.Helper()
	ctx := context.Background()

	srv, err := postgresServer(ctx)
	if err != nil {
		unavailable(tb, err.Error())
	}
	tpl, err := srv.template(ctx, migrations)
	if err != nil {
		tb.Fatalf("testinfra: template database: %v", err)
	}

	name := "t_" + sanitize(tb.Name(), 40) + "_" + randomHex(4)
	if _, err := srv.admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE "+pgx.Identifier{tpl}.Sanitize()); err != nil {
		tb.Fatalf("testinfra: create database %s from %s: %v", name, tpl, err)
	}
	tb.Cleanup(func() {
		// FORCE ends connections a test forgot to close (PostgreSQL 13+).
		if _, err := srv.admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			tb.Errorf("testinfra: drop database %s: %v", name, err)
		}
	})

	dbURL := withDatabase(srv.url, name)
	pool, err := pgdb.Open(ctx, pgdb.Config{URL: dbURL, MaxConns: 4})
	if err != nil {
		tb.Fatalf("testinfra: connect to %s: %v", name, err)
	}
	tb.Cleanup(pool.Close)
	return &Database{Pool: pool, URL: dbURL, Name: name}
}

// pgServer is the PostgreSQL server shared by the tests of one binary.
type pgServer struct {
	url   string        // maintenance database URL
	admin *pgxpool.Pool // creates and drops databases

	mu        sync.Mutex
	templates map[string]string // migrations hash → template name
}

var pgShared struct {
	mu  sync.Mutex
	srv *pgServer
	err error
}

// postgresServer finds the server once per test binary: env, then Docker.
// A failure is remembered so that every test reports it quickly.
func postgresServer(ctx context.Context) (*pgServer, error) {
	pgShared.mu.Lock()
	defer pgShared.mu.Unlock()
	if pgShared.srv != nil || pgShared.err != nil {
		return pgShared.srv, pgShared.err
	}
	pgShared.srv, pgShared.err = startPostgres(ctx, os.Getenv(EnvPostgresURL), dockerAvailable)
	return pgShared.srv, pgShared.err
}

func startPostgres(ctx context.Context, envURL string, haveDocker func() bool) (*pgServer, error) {
	srvURL := envURL
	if srvURL == "" {
		if !haveDocker() {
			return nil, errors.New(missingPostgres)
		}
		ctr, err := tcpostgres.Run(ctx, PostgresImage,
			tcpostgres.WithDatabase("postgres"),
			tcpostgres.WithUsername("postgres"),
			tcpostgres.WithPassword("postgres"),
			tcpostgres.BasicWaitStrategies(),
		)
		if err != nil {
			return nil, fmt.Errorf("start PostgreSQL with testcontainers (%s): %w", PostgresImage, err)
		}
		onShutdown(func() { _ = ctr.Terminate(context.Background()) })
		if srvURL, err = ctr.ConnectionString(ctx, "sslmode=disable"); err != nil {
			return nil, fmt.Errorf("PostgreSQL container address: %w", err)
		}
	}
	admin, err := pgdb.Open(ctx, pgdb.Config{URL: srvURL, MaxConns: 4, ConnectTimeout: 3 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("cannot reach PostgreSQL at %s (from %s): %w\n%s", redact(srvURL), EnvPostgresURL, err, startPostgresHint)
	}
	onShutdown(admin.Close)
	return &pgServer{url: srvURL, admin: admin, templates: map[string]string{}}, nil
}

const startPostgresHint = `Start PostgreSQL 15+ (on Debian: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start),
or unset the variable on a machine with Docker to let testcontainers start one.`

const missingPostgres = `no PostgreSQL for the tests: ` + EnvPostgresURL + ` is not set and no Docker engine answers.
Either start PostgreSQL 15+ and run
    export ` + EnvPostgresURL + `='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'
(make test sets it for you), or start Docker so that testcontainers can start one`

// template returns the name of a database with migrations applied, building
// it at most once per server across all test binaries.
func (s *pgServer) template(ctx context.Context, migrations fs.FS) (string, error) {
	hash, err := hashFS(migrations)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if name, ok := s.templates[hash]; ok {
		return name, nil
	}
	name := "tpl_" + hash[:16]

	conn, err := s.admin.Acquire(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Release()
	// Serialise template builds across test binaries (go test runs packages
	// in parallel processes).
	const lockKey = 0x73686f70666c6f6f // "shopfloo"
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(lockKey)); err != nil {
		return "", err
	}
	defer func() { _, _ = conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", int64(lockKey)) }()

	var ready *bool
	err = conn.QueryRow(ctx, "SELECT datistemplate FROM pg_database WHERE datname = $1", name).Scan(&ready)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return "", err
	case ready != nil && *ready:
		s.templates[hash] = name
		return name, nil
	default: // a build that died half way: start again
		if _, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return "", err
		}
	}

	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	if migrations != nil {
		if _, err := pgdb.MigrateURL(ctx, withDatabase(s.url, name), migrations, nil); err != nil {
			return "", fmt.Errorf("migrate %s: %w", name, err)
		}
	}
	// Marking it a template is the "build finished" flag checked above.
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" IS_TEMPLATE true"); err != nil {
		return "", err
	}
	s.templates[hash] = name
	return name, nil
}

// hashFS hashes the names and contents of every file in fsys.
func hashFS(fsys fs.FS) (string, error) {
	h := sha256.New()
	if fsys == nil {
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	var paths []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("read migrations: %w", err)
	}
	sort.Strings(paths)
	for _, p := range paths {
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return "", fmt.Errorf("read migration %s: %w", p, err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// withDatabase returns rawURL with its database replaced by name.
func withDatabase(rawURL, name string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" {
		// keyword/value form: a later dbname= wins.
		return rawURL + " dbname=" + name
	}
	u.Path = "/" + name
	return u.String()
}

// redact hides a password in a URL for error messages.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return rawURL
	}
	return u.Redacted()
}

var nonIdent = regexp.MustCompile(`[^a-z0-9]+`)

// sanitize turns a test name into a lower-case identifier of at most n bytes.
func sanitize(s string, n int) string {
	s = strings.Trim(nonIdent.ReplaceAllString(strings.ToLower(s), "_"), "_")
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// PostgresAdminURL is the URL of the test server's maintenance database,
// as its superuser: for tests that create roles or databases themselves
// (pkg/pgroles). Whatever such a test creates, it removes.
func PostgresAdminURL(tb testing.TB) string {
	tb.Helper()
	srv, err := postgresServer(context.Background())
	if err != nil {
		unavailable(tb, err.Error())
	}
	return srv.url
}

// PostgresRoles is Postgres with the database given an owner and an app
// role as make run and compose give a service's (pkg/pgroles, ADR 0040):
// Pool and URL connect as the app role (no DDL), OwnerURL as the owner
// (migrations; with nil migrations the database is empty and the owner
// migrates it). The roles are dropped when the test ends.
func PostgresRoles(tb testing.TB, migrations fs.FS) *Database {
	tb.Helper()
	ctx := context.Background()
	admin := PostgresAdminURL(tb)
	var d pgroles.Database
	// Cleanups run last-in first-out: this one, after the database is dropped.
	tb.Cleanup(func() {
		if d.Name == "" {
			return
		}
		if err := pgroles.Drop(context.Background(), admin, d); err != nil {
			tb.Errorf("testinfra: %v", err)
		}
	})
	su := Postgres(tb, migrations)
	d = pgroles.For("", su.Name, randomHex(12), randomHex(12))
	su.Pool.Close() // the superuser's pool: the test gets the app role's
	if err := pgroles.Provision(ctx, admin, d); err != nil {
		tb.Fatalf("testinfra: roles of %s: %v", d.Name, err)
	}
	appURL, err := pgroles.WithUser(admin, d.App, d.Name)
	if err != nil {
		tb.Fatalf("testinfra: %v", err)
	}
	ownerURL, err := pgroles.WithUser(admin, d.Owner, d.Name)
	if err != nil {
		tb.Fatalf("testinfra: %v", err)
	}
	pool, err := pgdb.Open(ctx, pgdb.Config{URL: appURL, MaxConns: 4})
	if err != nil {
		tb.Fatalf("testinfra: connect to %s as %s: %v", d.Name, d.App.Name, err)
	}
	tb.Cleanup(pool.Close)
	return &Database{Pool: pool, URL: appURL, Name: d.Name, OwnerURL: ownerURL}
}

// AsOwner returns getenv with DATABASE_URL set to d's OwnerURL: the
// environment of the migrate command, or an operator command that changes
// the schema, beside a service running as the app role.
func (d *Database) AsOwner(getenv func(string) string) func(string) string {
	return func(k string) string {
		if k == "DATABASE_URL" && d.OwnerURL != "" {
			return d.OwnerURL
		}
		return getenv(k)
	}
}
