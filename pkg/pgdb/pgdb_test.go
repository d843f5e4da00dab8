package pgdb_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

var migrations = fstest.MapFS{
	"00001_widgets.sql": {Data: []byte(`-- +goose Up
CREATE TABLE widgets (id int PRIMARY KEY, name text NOT NULL UNIQUE CONSTRAINT name_not_blank CHECK (name <> ''));
-- +goose Down
DROP TABLE widgets;
`)},
	"00002_gadgets.sql": {Data: []byte(`-- +goose Up
CREATE TABLE gadgets (id int PRIMARY KEY);
-- +goose Down
DROP TABLE gadgets;
`)},
}

func TestMigrateIsIdempotentAndSafeConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, nil)
	const n = 4
	results := make([][]int64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			results[i], errs[i] = pgdb.Migrate(ctx, db.Pool, migrations, nil)
		})
	}
	wg.Wait()
	var applied []int64
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("migrator %d: %v", i, errs[i])
		}
		applied = append(applied, results[i]...)
	}
	slices.Sort(applied)
	if !slices.Equal(applied, []int64{1, 2}) {
		t.Fatalf("versions applied across %d concurrent migrators = %v, want each of 1, 2 exactly once", n, applied)
	}
	again, err := pgdb.Migrate(ctx, db.Pool, migrations, nil)
	if err != nil || len(again) != 0 {
		t.Fatalf("second run applied %v, %v; want nothing", again, err)
	}
}

func TestInTxCommitsOrRollsBackOnErrorAndPanic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations)
	count := func() int {
		var c int
		if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM widgets").Scan(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	insert := func(tx pgx.Tx, id int, name string) error {
		_, err := tx.Exec(ctx, "INSERT INTO widgets (id, name) VALUES ($1, $2)", id, name)
		return err
	}

	if err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error { return insert(tx, 1, "a") }); err != nil {
		t.Fatal(err)
	}
	if count() != 1 {
		t.Fatal("commit: row missing")
	}

	errDomain := errors.New("out of stock")
	err := pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
		if err := insert(tx, 2, "b"); err != nil {
			return err
		}
		return errDomain
	})
	if !errors.Is(err, errDomain) {
		t.Fatalf("InTx = %v, want the callback's error unchanged", err)
	}
	if count() != 1 {
		t.Fatal("error: row written despite rollback")
	}

	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("panic swallowed")
			}
		}()
		_ = pgdb.InTx(ctx, db.Pool, func(tx pgx.Tx) error {
			_ = insert(tx, 3, "c")
			panic("boom")
		})
	}()
	if count() != 1 {
		t.Fatal("panic: row written despite rollback")
	}
}

func TestIsCodeAndConstraintNameClassifyPostgresErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations)
	if _, err := db.Pool.Exec(ctx, "INSERT INTO widgets VALUES (1, 'a')"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		sql, code, constraint string
	}{
		{"INSERT INTO widgets VALUES (2, 'a')", pgdb.CodeUniqueViolation, "widgets_name_key"},
		{"INSERT INTO widgets VALUES (3, '')", pgdb.CodeCheckViolation, "name_not_blank"},
	}
	for _, tt := range tests {
		_, err := db.Pool.Exec(ctx, tt.sql)
		if !pgdb.IsCode(err, tt.code) || pgdb.ConstraintName(err) != tt.constraint {
			t.Errorf("%s: err = %v; want code %s on %s", tt.sql, err, tt.code, tt.constraint)
		}
	}
	if pgdb.IsCode(errors.New("other"), pgdb.CodeUniqueViolation) || pgdb.ConstraintName(nil) != "" {
		t.Error("non-PostgreSQL errors classified as PostgreSQL errors")
	}
}

func TestOpenErrorsDoNotLeakPasswords(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  pgdb.Config
		want string
	}{
		{"empty", pgdb.Config{}, "database URL is empty"},
		{"garbage", pgdb.Config{URL: "postgres://u:hunter2@host:notaport/db"}, "cannot be parsed"},
		{"pool sizes", pgdb.Config{URL: "postgres://127.0.0.1/db", MinConns: 5, MaxConns: 2}, "pool size"},
		{"unreachable", pgdb.Config{URL: "postgres://u:hunter2@127.0.0.1:1/db?connect_timeout=1"}, "ping 127.0.0.1:1/db"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool, err := pgdb.Open(context.Background(), tt.cfg)
			if err == nil {
				pool.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("err = %v; want it to say %q and never the password", err, tt.want)
			}
		})
	}
}

// TestServerEndsStuckStatementsLockWaitsAndIdleTransactions: the server ends what a stuck or frozen client
// would otherwise hold: a statement running past statement_timeout
// (57014), a wait for a lock past lock_timeout (55P03), a transaction left
// idle past idle_in_transaction_session_timeout (25P03, the session is
// ended). Defaults apply when unset; negative turns one off; the URL's own
// setting wins.
func TestServerEndsStuckStatementsLockWaitsAndIdleTransactions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations)
	open := func(c pgdb.Config) *pgxpool.Pool {
		t.Helper()
		c.URL = db.URL
		pool, err := pgdb.Open(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		return pool
	}
	show := func(pool *pgxpool.Pool, param string) string {
		t.Helper()
		var v string
		if err := pool.QueryRow(ctx, "SHOW "+param).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	defaults := open(pgdb.Config{})
	if a, b, c := show(defaults, "statement_timeout"), show(defaults, "lock_timeout"), show(defaults, "idle_in_transaction_session_timeout"); a != "30s" || b != "10s" || c != "1min" {
		t.Errorf("defaults: statement %s, lock %s, idle in transaction %s", a, b, c)
	}
	if v := show(open(pgdb.Config{StatementTimeout: -1}), "statement_timeout"); v != "0" {
		t.Errorf("statement_timeout off: %s", v)
	}

	// Each statement below gets 5 s from the test: without the server's
	// timeouts it fails on that deadline instead of hanging.
	bounded := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		t.Cleanup(cancel)
		return c
	}
	// The idle-in-transaction timeout is well above the lock timeout: the
	// holder below must outlive the waiter's lock wait even on a loaded
	// machine (at 300 ms it was ended first now and then).
	short := open(pgdb.Config{StatementTimeout: time.Second, LockTimeout: 200 * time.Millisecond, IdleInTxTimeout: 1500 * time.Millisecond})
	if _, err := short.Exec(bounded(), "SELECT pg_sleep(2)"); !pgdb.IsCode(err, pgdb.CodeQueryCanceled) {
		t.Errorf("a 2 s statement with a 1 s statement_timeout: %v", err)
	}

	// A row locked by a transaction that goes nowhere: the second writer
	// gives up after lock_timeout instead of queueing behind it.
	if _, err := short.Exec(ctx, "INSERT INTO widgets VALUES (1, 'one')"); err != nil {
		t.Fatal(err)
	}
	holder, err := short.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Rollback(ctx) }()
	var holderPID int
	if err := holder.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&holderPID); err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, "UPDATE widgets SET name = 'held' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := short.Exec(bounded(), "UPDATE widgets SET name = 'waiting' WHERE id = 1"); !pgdb.IsCode(err, pgdb.CodeLockNotAvailable) {
		t.Errorf("a write behind a held row lock with a 200 ms lock_timeout: %v", err)
	}

	// The holder stays idle in its transaction: the server ends its
	// session (watched from another session until a deadline), and the
	// lock is free again.
	testinfra.Eventually(t, 5*time.Second, func() error {
		var alive bool
		if err := db.Pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", holderPID).Scan(&alive); err != nil {
			return err
		}
		if alive {
			return fmt.Errorf("the idle transaction's session %d is still there", holderPID)
		}
		return nil
	})
	if _, err := holder.Exec(bounded(), "SELECT 1"); err == nil {
		t.Error("a transaction left idle past its 1.5 s idle_in_transaction_session_timeout still runs")
	}
	if _, err := short.Exec(bounded(), "UPDATE widgets SET name = 'free' WHERE id = 1"); err != nil {
		t.Errorf("after the idle transaction was ended: %v", err)
	}

	// The URL's own setting wins over the Config's.
	sep := "?"
	if strings.Contains(db.URL, "?") {
		sep = "&"
	}
	own, err := pgdb.Open(ctx, pgdb.Config{URL: db.URL + sep + "statement_timeout=1234"})
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	if v := show(own, "statement_timeout"); v != "1234ms" {
		t.Errorf("statement_timeout from the URL: %s", v)
	}
}
