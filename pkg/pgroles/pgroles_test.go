package pgroles_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/pgroles"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// widgets is a service's migrations in miniature: a table with an
// identity column, a free-standing sequence and a view.
var widgets = fstest.MapFS{"00001_widgets.sql": {Data: []byte(`-- +goose Up
CREATE TABLE widgets (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);
CREATE SEQUENCE widget_numbers;
CREATE VIEW widget_names AS SELECT name FROM widgets;
-- +goose Down
DROP VIEW widget_names;
DROP SEQUENCE widget_numbers;
DROP TABLE widgets;
`)}}

func secret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// provisioned returns a database of a unique name with its roles, made by
// Provision, and removes all three when the test ends.
func provisioned(t *testing.T, admin, svc string) pgroles.Database {
	t.Helper()
	d := pgroles.For("t_"+secret(t)[:8]+"_", svc, secret(t), secret(t))
	cleanup(t, admin, d)
	if err := pgroles.Provision(context.Background(), admin, d); err != nil {
		t.Fatalf("provision %s: %v", d.Name, err)
	}
	return d
}

func cleanup(t *testing.T, admin string, d pgroles.Database) {
	t.Cleanup(func() {
		if err := pgroles.Drop(context.Background(), admin, d); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

func as(t *testing.T, admin string, r pgroles.Role, db string) string {
	t.Helper()
	u, err := pgroles.WithUser(admin, r, db)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// refused asserts that err is PostgreSQL's insufficient_privilege (42501)
// or, for DDL on an object the role does not own, must_be_owner (also
// 42501).
func refused(t *testing.T, what string, err error) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Errorf("%s: got %v, want SQLSTATE 42501 (insufficient privilege)", what, err)
	}
}

// TestOwnerMigratesAppOnlyReadsAndWrites: the owner role applies the
// migrations; the app role reads and writes every table the owner made
// (identity columns and sequences included: default privileges, with no
// grant after the migration) but can change no schema: CREATE, ALTER, DROP,
// TRUNCATE are refused. Neither role is a superuser. Provisioning again
// changes nothing the service relies on.
func TestOwnerMigratesAppOnlyReadsAndWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin := testinfra.PostgresAdminURL(t)
	d := provisioned(t, admin, "widgets")
	if _, err := pgdb.MigrateURL(ctx, as(t, admin, d.Owner, d.Name), widgets, nil); err != nil {
		t.Fatalf("the owner cannot migrate: %v", err)
	}
	app := connect(t, as(t, admin, d.App, d.Name))
	for _, stmt := range []string{
		"INSERT INTO widgets (name) VALUES ('a'), ('b')",
		"UPDATE widgets SET name = 'c' WHERE name = 'b'",
		"DELETE FROM widgets WHERE name = 'a'",
		"SELECT nextval('widget_numbers')",
		"SELECT count(*) FROM widget_names",
		"SELECT pg_advisory_lock(1), pg_advisory_unlock(1)",
		"LISTEN x",
		"BEGIN; LOCK TABLE widgets IN SHARE ROW EXCLUSIVE MODE; COMMIT", // search's swap locks its tables
	} {
		if _, err := app.Exec(ctx, stmt); err != nil {
			t.Errorf("app: %s: %v", stmt, err)
		}
	}
	for _, stmt := range []string{
		"CREATE TABLE gadgets (id int)",
		"ALTER TABLE widgets ADD COLUMN colour text",
		"DROP TABLE widgets CASCADE",
		"TRUNCATE widgets",
		"CREATE INDEX ON widgets (name)",
		"CREATE SCHEMA mine",
		"ALTER ROLE " + pgx.Identifier{d.App.Name}.Sanitize() + " SUPERUSER",
		"CREATE DATABASE " + pgx.Identifier{d.Name + "_2"}.Sanitize(),
	} {
		_, err := app.Exec(ctx, stmt)
		refused(t, "app: "+stmt, err)
	}
	var super, createDB, createRole bool
	for _, r := range []pgroles.Role{d.Owner, d.App} {
		if err := app.QueryRow(ctx, "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = $1", r.Name).Scan(&super, &createDB, &createRole); err != nil {
			t.Fatal(err)
		}
		if super || createDB || createRole {
			t.Errorf("%s: superuser %v, createdb %v, createrole %v; want none", r.Name, super, createDB, createRole)
		}
	}
	// Provisioning again (every start does) keeps all of it.
	if err := pgroles.Provision(ctx, admin, d); err != nil {
		t.Fatalf("provision again: %v", err)
	}
	var n int
	if err := app.QueryRow(ctx, "SELECT count(*) FROM widgets").Scan(&n); err != nil || n != 1 {
		t.Errorf("widgets after provisioning again: %d rows (%v), want 1", n, err)
	}
	_, err := app.Exec(ctx, "TRUNCATE widgets")
	refused(t, "app after provisioning again: TRUNCATE", err)
}

// TestAnotherServicesRolesCannotConnect: PUBLIC has no CONNECT on a
// service's database, so another service's roles, owner or app, are
// refused at connect and never reach its tables.
func TestAnotherServicesRolesCannotConnect(t *testing.T) {
	t.Parallel()
	admin := testinfra.PostgresAdminURL(t)
	orders := provisioned(t, admin, "orders")
	payments := provisioned(t, admin, "payments")
	for _, r := range []pgroles.Role{orders.Owner, orders.App} {
		_, err := pgx.Connect(context.Background(), as(t, admin, r, payments.Name))
		refused(t, r.Name+" connects to "+payments.Name, err)
		if err != nil && !strings.Contains(err.Error(), "permission denied for database") {
			t.Errorf("%s: %v; want permission denied for database", r.Name, err)
		}
	}
	// Its own database it may open.
	connect(t, as(t, admin, orders.App, orders.Name))
}

// TestProvisionHandsOverADatabaseTheSuperuserMigrated: a database created
// and migrated by the superuser (a sandbox from before ADR 0040) is handed
// to the owner: tables, views and sequences change owner, and the app role
// can use them.
func TestProvisionHandsOverADatabaseTheSuperuserMigrated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin := testinfra.PostgresAdminURL(t)
	d := pgroles.For("t_"+secret(t)[:8]+"_", "legacy", secret(t), secret(t))
	cleanup(t, admin, d)
	conn := connect(t, admin)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{d.Name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	dbURL, err := pgroles.WithDatabase(admin, d.Name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pgdb.MigrateURL(ctx, dbURL, widgets, nil); err != nil {
		t.Fatal(err)
	}
	if err := pgroles.Provision(ctx, admin, d); err != nil {
		t.Fatalf("provision: %v", err)
	}
	db := connect(t, dbURL)
	rows, err := db.Query(ctx, `SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c
		WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v', 'S') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	owners, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var o [2]string
		return o, r.Scan(&o[0], &o[1])
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(owners) < 5 { // goose's table and its sequence, widgets and its sequence, the view, widget_numbers
		t.Errorf("only %d objects: %v", len(owners), owners)
	}
	for _, o := range owners {
		if o[1] != d.Owner.Name {
			t.Errorf("%s belongs to %s, want %s", o[0], o[1], d.Owner.Name)
		}
	}
	app := connect(t, as(t, admin, d.App, d.Name))
	if _, err := app.Exec(ctx, "INSERT INTO widgets (name) VALUES ('x')"); err != nil {
		t.Errorf("app cannot write a handed-over table: %v", err)
	}
	// The owner can change it (a later migration).
	owner := connect(t, as(t, admin, d.Owner, d.Name))
	if _, err := owner.Exec(ctx, "ALTER TABLE widgets ADD COLUMN colour text"); err != nil {
		t.Errorf("owner cannot alter a handed-over table: %v", err)
	}
}

// TestProvisionSetsPasswords: the passwords are stored (as SCRAM
// verifiers), and provisioning with another password replaces them.
func TestProvisionSetsPasswords(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin := testinfra.PostgresAdminURL(t)
	d := provisioned(t, admin, "rotate")
	conn := connect(t, admin)
	stored := func() string {
		var v string
		if err := conn.QueryRow(ctx, "SELECT coalesce(rolpassword, '') FROM pg_authid WHERE rolname = $1", d.App.Name).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := stored()
	if !strings.HasPrefix(before, "SCRAM-SHA-256$") {
		t.Fatalf("stored password %q: want a SCRAM-SHA-256 verifier", before)
	}
	d.App.Password = secret(t)
	if err := pgroles.Provision(ctx, admin, d); err != nil {
		t.Fatal(err)
	}
	if after := stored(); after == before {
		t.Error("a new password did not replace the old one")
	}
}

// TestValidate: names must be plain identifiers, the roles distinct, the
// passwords present, long and different.
func TestValidate(t *testing.T) {
	t.Parallel()
	ok := pgroles.For("shopfloor_", "orders", strings.Repeat("o", 16), strings.Repeat("a", 16))
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid: %v", err)
	}
	for name, tc := range map[string]struct {
		mutate func(*pgroles.Database)
		want   string
	}{
		"quote in name":  {func(d *pgroles.Database) { d.Name = `orders"; DROP` }, "database name"},
		"upper case":     {func(d *pgroles.Database) { d.App.Name = "Orders_app" }, "app role name"},
		"same role":      {func(d *pgroles.Database) { d.App.Name = d.Owner.Name }, "must not own its schema"},
		"short password": {func(d *pgroles.Database) { d.App.Password = "short" }, "password of 5 characters"},
		"no password":    {func(d *pgroles.Database) { d.Owner.Password = "" }, "password of 0 characters"},
		"same password":  {func(d *pgroles.Database) { d.App.Password = d.Owner.Password }, "the same password"},
	} {
		d := ok
		tc.mutate(&d)
		if err := d.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
