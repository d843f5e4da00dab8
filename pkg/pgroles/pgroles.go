// Package pgroles gives a service's PostgreSQL database its two login roles
// (ADR 0040): an owner, which migrates, and an app role, which the running
// service connects as and which cannot change the schema.
//
// Contract:
//   - Provision creates the database (owned by the owner role) and both
//     roles when they are missing, sets both passwords, and grants:
//     the owner owns the database, its public schema and every table,
//     view and sequence in it; the app role may CONNECT, use the schema,
//     SELECT/INSERT/UPDATE/DELETE every table and use every sequence, for
//     what exists now and (by default privileges) for whatever the owner
//     creates later. Nothing else: no DDL, no TRUNCATE, no other database.
//     PUBLIC loses CONNECT on the database, so no other role but a
//     superuser can open it: another service's roles are refused at
//     connect, before any table is reached.
//   - It may run any number of times: a rotated password takes effect, and
//     a database the superuser created and migrated before the roles
//     existed is handed to its owner (tables, views, free-standing
//     sequences; a column's sequence moves with its table).
//   - Neither role is a superuser, and neither may create databases or
//     roles or bypass row security.
//   - The admin connection must be a superuser's (or a role with CREATEDB,
//     CREATEROLE and membership in the service roles; a superuser is what
//     make run and compose use). Passwords travel only inside the
//     statements PostgreSQL runs, quoted by the server (format %L), never
//     in logs or errors this package writes.
package pgroles

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Database is one service's database and its roles.
type Database struct {
	// Name is the database, e.g. orders or shopfloor_orders.
	Name string
	// Owner migrates and owns the schema; App is what the service runs as.
	Owner, App Role
}

// Role is a login role.
type Role struct {
	Name     string
	Password string
}

// For returns the database of service svc with its roles' conventional
// names: prefix+svc, prefix+svc+"_owner" and prefix+svc+"_app".
func For(prefix, svc, ownerPassword, appPassword string) Database {
	db := prefix + svc
	return Database{Name: db, Owner: Role{db + "_owner", ownerPassword}, App: Role{db + "_app", appPassword}}
}

// ErrUnreachable is Provision's error when the administrator cannot
// connect: the server may not be up yet, and trying again may help.
var ErrUnreachable = errors.New("PostgreSQL unreachable")

// PasswordVars are the environment variables of service svc's owner and
// app passwords, e.g. ORDERS_DB_OWNER_PASSWORD and ORDERS_DB_APP_PASSWORD:
// what compose's .env, make run's secrets and deploy/pgroles name them.
func PasswordVars(svc string) (owner, app string) {
	v := strings.ToUpper(strings.ReplaceAll(svc, "-", "_"))
	return v + "_DB_OWNER_PASSWORD", v + "_DB_APP_PASSWORD"
}

var ident = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Validate reports what is wrong with d: names that are not plain
// lower-case identifiers, a missing or short password, one role for both.
func (d Database) Validate() error {
	var errs []error
	for what, name := range map[string]string{"database": d.Name, "owner role": d.Owner.Name, "app role": d.App.Name} {
		if !ident.MatchString(name) {
			errs = append(errs, fmt.Errorf("%s name %q: want a lower-case identifier of at most 63 bytes (a-z, 0-9, _)", what, name))
		}
	}
	if d.Owner.Name == d.App.Name {
		errs = append(errs, fmt.Errorf("owner and app role are both %q: the running service must not own its schema", d.Owner.Name))
	}
	for _, r := range []Role{d.Owner, d.App} {
		if len(r.Password) < 16 {
			errs = append(errs, fmt.Errorf("role %s: password of %d characters, want at least 16", r.Name, len(r.Password)))
		}
	}
	if d.Owner.Password != "" && d.Owner.Password == d.App.Password {
		errs = append(errs, fmt.Errorf("roles %s and %s have the same password", d.Owner.Name, d.App.Name))
	}
	return errors.Join(errs...)
}

// Provision makes d's database and roles as the package comment says,
// connecting with adminURL (a superuser's URL to any database of the
// server; the database part is replaced for the steps inside d).
func Provision(ctx context.Context, adminURL string, d Database) error {
	if err := d.Validate(); err != nil {
		return err
	}
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("%w: connect as the administrator: %w", ErrUnreachable, err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	var super bool
	if err := admin.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil {
		return fmt.Errorf("who is the administrator: %w", err)
	}
	if !super {
		return errors.New("the administrator's connection is not a superuser's: it cannot create the roles and hand the database over")
	}
	for _, r := range []Role{d.Owner, d.App} {
		if err := execFormat(ctx, admin, "CREATE ROLE %I", "SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", r.Name); err != nil {
			return fmt.Errorf("create role %s: %w", r.Name, err)
		}
		// Never a superuser, even if someone made it one by hand.
		if err := execFormat(ctx, admin, "ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD %L", "", r.Name, r.Password); err != nil {
			return fmt.Errorf("set up role %s: %w", r.Name, err)
		}
	}
	// CREATE DATABASE cannot run in a transaction block: one statement.
	if err := execFormat(ctx, admin, "CREATE DATABASE %I OWNER %I", "SELECT NOT EXISTS (SELECT FROM pg_database WHERE datname = $1)", d.Name, d.Owner.Name); err != nil {
		return fmt.Errorf("create database %s: %w", d.Name, err)
	}
	for _, step := range []struct {
		stmt string
		args []any
	}{
		{"ALTER DATABASE %I OWNER TO %I", []any{d.Name, d.Owner.Name}},
		{"REVOKE ALL ON DATABASE %I FROM PUBLIC", []any{d.Name}},
		{"GRANT CONNECT ON DATABASE %I TO %I", []any{d.Name, d.App.Name}},
	} {
		if err := execFormat(ctx, admin, step.stmt, "", step.args...); err != nil {
			return fmt.Errorf("database %s: %w", d.Name, err)
		}
	}
	return provisionInside(ctx, adminURL, d)
}

// provisionInside is the part of Provision that runs in d's database, in
// one transaction.
func provisionInside(ctx context.Context, adminURL string, d Database) error {
	dbURL, err := WithDatabase(adminURL, d.Name)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("connect to %s as the administrator: %w", d.Name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		steps := []string{
			"ALTER SCHEMA public OWNER TO %I",
			"REVOKE ALL ON SCHEMA public FROM PUBLIC",
		}
		for _, s := range steps {
			if err := execFormat(ctx, tx, s, "", d.Owner.Name); err != nil {
				return err
			}
		}
		// What the superuser created before the roles existed.
		rows, err := tx.Query(ctx, `
SELECT format(CASE WHEN c.relkind = 'S' THEN 'ALTER SEQUENCE public.%I OWNER TO %I' ELSE 'ALTER TABLE public.%I OWNER TO %I' END, c.relname, $1::text)
  FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
   AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = $1)
   AND NOT (c.relkind = 'S' AND EXISTS (SELECT FROM pg_depend d
        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
 ORDER BY c.relkind <> 'S', c.relname`, d.Owner.Name)
		if err != nil {
			return fmt.Errorf("find objects to hand over: %w", err)
		}
		handOver, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("find objects to hand over: %w", err)
		}
		for _, stmt := range handOver {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("%s: %w", stmt, err)
			}
		}
		grants := []string{
			"GRANT USAGE ON SCHEMA public TO %2$I",
			"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %2$I",
			"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO %2$I",
			"ALTER DEFAULT PRIVILEGES FOR ROLE %1$I IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %2$I",
			"ALTER DEFAULT PRIVILEGES FOR ROLE %1$I IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO %2$I",
		}
		for _, g := range grants {
			if err := execFormat(ctx, tx, g, "", d.Owner.Name, d.App.Name); err != nil {
				return err
			}
		}
		return nil
	})
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// execFormat has the server build the statement with format(stmt, args...)
// (%I quotes an identifier, %L a literal such as a password) and runs it,
// unless cond (a query of args[0] answering one boolean) says false.
// Utility statements (CREATE ROLE, GRANT, ...) take no bind parameters:
// this is how they get their names and passwords quoted correctly.
func execFormat(ctx context.Context, db execer, stmt, cond string, args ...any) error {
	if cond != "" {
		var do bool
		if err := db.QueryRow(ctx, cond, args[0]).Scan(&do); err != nil {
			return fmt.Errorf("%s: %w", cond, err)
		}
		if !do {
			return nil
		}
	}
	q := "SELECT format($1::text"
	for i := range args {
		q += fmt.Sprintf(", $%d::text", i+2)
	}
	var sql string
	if err := db.QueryRow(ctx, q+")", append([]any{stmt}, args...)...).Scan(&sql); err != nil {
		return fmt.Errorf("format %q: %w", stmt, err)
	}
	if _, err := db.Exec(ctx, sql); err != nil {
		// The statement as written, not as formatted: it may hold a password.
		return fmt.Errorf("%s: %w", stmt, err)
	}
	return nil
}

// WithDatabase returns the connection URL rawURL with its database
// replaced by name (a postgres:// URL or a key=value string).
func WithDatabase(rawURL, name string) (string, error) {
	if !strings.Contains(rawURL, "://") {
		return rawURL + " dbname=" + name, nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", errors.New("the administrator's URL does not parse (not shown: it may hold a password)")
	}
	u.Path = "/" + name
	return u.String(), nil
}

// WithUser returns the postgres:// URL rawURL connecting as r to database
// db instead, keeping host, port and parameters.
func WithUser(rawURL string, r Role, db string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" {
		return "", errors.New("a postgres:// URL is needed (not shown: it may hold a password)")
	}
	u.User = url.UserPassword(r.Name, r.Password)
	u.Path = "/" + db
	return u.String(), nil
}

// Drop removes d's database (WITH (FORCE): connections left open end)
// and its two roles, which hold nothing outside it; what is already gone
// is skipped. For tests and for tearing a sandbox down.
func Drop(ctx context.Context, adminURL string, d Database) error {
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("%w: connect as the administrator: %w", ErrUnreachable, err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	for _, stmt := range []string{
		"DROP DATABASE IF EXISTS " + pgx.Identifier{d.Name}.Sanitize() + " WITH (FORCE)",
		"DROP ROLE IF EXISTS " + pgx.Identifier{d.Owner.Name}.Sanitize() + ", " + pgx.Identifier{d.App.Name}.Sanitize(),
	} {
		if _, err := admin.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	return nil
}
