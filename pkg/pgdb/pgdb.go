// Package pgdb opens PostgreSQL connection pools, applies a service's embedded
// migrations and runs work inside transactions, with pgx/v5.
//
// Contract:
//   - Open validates the URL and pings the server once; it does not retry. A
//     service that must survive a database that is not up yet wraps Open in the
//     start-up retry of its lifecycle (see pkg/lifecycle), so /readyz reports
//     the missing dependency instead of the process crash-looping.
//   - Migrate applies every pending migration of an embedded fs.FS with goose
//     (files named 00001_name.sql at the root of the FS). Concurrent callers on
//     one database are serialised by a PostgreSQL session advisory lock, so
//     several replicas running the migrate role at once are safe.
//   - Every connection has TCP keepalive (KeepAlive: a dead server host is
//     noticed within about 35s) and the session timeouts of Config.
//   - InTx commits when fn returns nil and rolls back otherwise, including when
//     fn panics. A state change and the event or job it causes are written in
//     one InTx call (STYLE.md, habit 5).
package pgdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Config describes a pool. The zero value of every field but URL picks the default.
type Config struct {
	// URL is a libpq connection string or URL, e.g.
	// postgres://postgres@127.0.0.1:5432/orders?sslmode=disable. Required.
	URL string `env:"DATABASE_URL,required"`
	// MaxConns bounds the pool. Default 8: an order-shaped transaction peaks
	// near 4 connections on 2 cores, so more connections only add contention.
	MaxConns int32 `env:"DATABASE_MAX_CONNS" envDefault:"8"`
	// MinConns is kept open when idle. Default 0.
	MinConns int32 `env:"DATABASE_MIN_CONNS" envDefault:"0"`
	// MaxConnIdleTime closes connections idle for longer. Default 5m.
	MaxConnIdleTime time.Duration `env:"DATABASE_MAX_CONN_IDLE_TIME" envDefault:"5m"`
	// ConnectTimeout bounds dialing one connection. Default 5s.
	ConnectTimeout time.Duration `env:"DATABASE_CONNECT_TIMEOUT" envDefault:"5s"`
	// StatementTimeout is every session's statement_timeout: a statement
	// running longer is cancelled by the server (SQLSTATE 57014). Default
	// 30s; negative: none (the migrate command: an index build may take
	// longer).
	StatementTimeout time.Duration `env:"DATABASE_STATEMENT_TIMEOUT" envDefault:"30s"`
	// LockTimeout is every session's lock_timeout: a statement waiting
	// longer for a lock (a row, a table, an advisory lock) fails with
	// 55P03 instead of queueing behind a stuck holder. Default 10s;
	// negative: none.
	LockTimeout time.Duration `env:"DATABASE_LOCK_TIMEOUT" envDefault:"10s"`
	// IdleInTxTimeout is every session's
	// idle_in_transaction_session_timeout: a transaction left open and
	// idle longer (a process frozen or leaking a transaction, holding its
	// locks) is ended by the server, and its session with it. Default 60s;
	// negative: none.
	IdleInTxTimeout time.Duration `env:"DATABASE_IDLE_IN_TRANSACTION_TIMEOUT" envDefault:"60s"`
}

// Session timeout defaults (Config's zero values).
const (
	DefaultStatementTimeout = 30 * time.Second
	DefaultLockTimeout      = 10 * time.Second
	DefaultIdleInTxTimeout  = 60 * time.Second
)

// Timeout SQLSTATEs: what a session timeout answers.
const (
	CodeQueryCanceled            = "57014" // statement_timeout (or a cancel request)
	CodeLockNotAvailable         = "55P03" // lock_timeout
	CodeIdleInTransactionTimeout = "25P03" // idle_in_transaction_session_timeout (the session is ended)
)

// PoolConfig turns c into a pgxpool.Config without connecting.
func (c Config) PoolConfig() (*pgxpool.Config, error) {
	if c.URL == "" {
		return nil, errors.New("pgdb: database URL is empty")
	}
	pc, err := pgxpool.ParseConfig(c.URL)
	if err != nil {
		// pgx includes the URL in some parse errors; do not echo passwords.
		return nil, errors.New("pgdb: database URL cannot be parsed (expected postgres://user@host:port/db?sslmode=disable)")
	}
	if c.MaxConns < 0 || c.MinConns < 0 || (c.MaxConns > 0 && c.MinConns > c.MaxConns) {
		return nil, fmt.Errorf("pgdb: pool size min %d max %d is invalid", c.MinConns, c.MaxConns)
	}
	pc.MaxConns = 8
	if c.MaxConns > 0 {
		pc.MaxConns = c.MaxConns
	}
	pc.MinConns = c.MinConns
	if c.MaxConnIdleTime > 0 {
		pc.MaxConnIdleTime = c.MaxConnIdleTime
	}
	pc.ConnConfig.ConnectTimeout = 5 * time.Second
	if c.ConnectTimeout > 0 {
		pc.ConnConfig.ConnectTimeout = c.ConnectTimeout
	}
	// TCP keepalive (KeepAlive): a vanished server host is noticed in
	// seconds, not hours. pgconn bounds the dial with ConnectTimeout.
	pc.ConnConfig.DialFunc = dialer().DialContext
	// Session timeouts, sent in the startup message (no round trip): the
	// server enforces them even when this process is frozen.
	for param, d := range map[string]time.Duration{
		"statement_timeout":                   orDefault(c.StatementTimeout, DefaultStatementTimeout),
		"lock_timeout":                        orDefault(c.LockTimeout, DefaultLockTimeout),
		"idle_in_transaction_session_timeout": orDefault(c.IdleInTxTimeout, DefaultIdleInTxTimeout),
	} {
		if _, set := pc.ConnConfig.RuntimeParams[param]; set {
			continue // the URL's own setting (options=-c… or ?param=) wins
		}
		pc.ConnConfig.RuntimeParams[param] = strconv.FormatInt(max(d, 0).Milliseconds(), 10)
	}
	return pc, nil
}

// orDefault is d, def when d is zero, and 0 (off) when d is negative.
func orDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// Open creates a pool and pings the server once.
func Open(ctx context.Context, c Config) (*pgxpool.Pool, error) {
	pc, err := c.PoolConfig()
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("pgdb: open pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgdb: ping %s:%d/%s: %w", pc.ConnConfig.Host, pc.ConnConfig.Port, pc.ConnConfig.Database, err)
	}
	return pool, nil
}

// Migrate applies every pending migration in fsys to the database behind pool
// and returns the versions it applied. It holds a session advisory lock for
// the duration, so concurrent migrators wait for each other.
func Migrate(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS, log *slog.Logger) ([]int64, error) {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	return migrateDB(ctx, db, fsys, log)
}

func migrateDB(ctx context.Context, db *sql.DB, fsys fs.FS, log *slog.Logger) ([]int64, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("pgdb: migration lock: %w", err)
	}
	opts := []goose.ProviderOption{goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true)}
	if log != nil {
		opts = append(opts, goose.WithSlog(log))
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys, opts...)
	if err != nil {
		return nil, fmt.Errorf("pgdb: load migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgdb: migrate: %w", err)
	}
	applied := make([]int64, 0, len(results))
	for _, r := range results {
		applied = append(applied, r.Source.Version)
	}
	return applied, nil
}

// MigrateURL is Migrate for a one-off connection described by a URL; the test
// harness uses it to build template databases without keeping a pool open.
func MigrateURL(ctx context.Context, url string, fsys fs.FS, log *slog.Logger) ([]int64, error) {
	cc, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, errors.New("pgdb: database URL cannot be parsed")
	}
	db := stdlib.OpenDB(*cc)
	defer db.Close()
	return migrateDB(ctx, db, fsys, log)
}

// Beginner is satisfied by *pgxpool.Pool, *pgx.Conn and pgx.Tx (a nested
// InTx on a pgx.Tx uses a savepoint).
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// InTx runs fn in a transaction: commit when fn returns nil, roll back on an
// error or a panic (which is re-raised). The error of fn is returned as is, so
// callers can match domain sentinels with errors.Is.
func InTx(ctx context.Context, db Beginner, fn func(tx pgx.Tx) error) (err error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("pgdb: begin: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			panic(p)
		}
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	if err = tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgdb: commit: %w", err)
	}
	return nil
}

// SQLSTATE codes the services translate into domain errors.
const (
	CodeUniqueViolation      = "23505"
	CodeForeignKeyViolation  = "23503"
	CodeCheckViolation       = "23514"
	CodeSerializationFailure = "40001"
	CodeDeadlockDetected     = "40P01"
)

// IsCode reports whether err is a PostgreSQL error with the given SQLSTATE.
func IsCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// ConstraintName returns the violated constraint's name, or "" when err is
// not a constraint violation. Stores use it to tell which unique key clashed.
func ConstraintName(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.ConstraintName
	}
	return ""
}
