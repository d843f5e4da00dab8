package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/pgroles"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	catalogmig "github.com/shopfloor/shopfloor/services/catalog/migrations"
	notificationsmig "github.com/shopfloor/shopfloor/services/notifications/migrations"
	ordersmig "github.com/shopfloor/shopfloor/services/orders/migrations"
	paymentsmig "github.com/shopfloor/shopfloor/services/payments/migrations"
	searchmig "github.com/shopfloor/shopfloor/services/search/migrations"
)

var migrations = map[string]fs.FS{
	"catalog": catalogmig.FS, "orders": ordersmig.FS, "payments": paymentsmig.FS,
	"notifications": notificationsmig.FS, "search": searchmig.FS,
}

func hexString(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestEveryServiceMigratesAsOwnerAndCannotReadAnother: pgroles makes the
// five services' databases and roles as make run and compose do; each
// owner applies its service's real migrations (search's creates the
// pg_trgm extension, which a database owner may); each app role uses its
// own tables; and orders' roles cannot read payments' tables (nor any
// other service's: refused at connect).
func TestEveryServiceMigratesAsOwnerAndCannotReadAnother(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin := testinfra.PostgresAdminURL(t)
	prefix := "t_" + hexString(t, 4) + "_"
	env := map[string]string{"PGROLES_ADMIN_URL": admin}
	var dbs []pgroles.Database
	for svc := range migrations {
		ov, av := pgroles.PasswordVars(svc)
		env[ov], env[av] = hexString(t, 12), hexString(t, 12)
		dbs = append(dbs, pgroles.For(prefix, svc, env[ov], env[av]))
	}
	t.Cleanup(func() { drop(t, admin, dbs) })
	var out bytes.Buffer
	args := []string{"-prefix", prefix, "catalog", "orders", "payments", "notifications", "search"}
	if err := run(ctx, args, func(k string) string { return env[k] }, &out); err != nil {
		t.Fatalf("pgroles: %v\n%s", err, out.String())
	}
	if got := strings.Count(out.String(), "pgroles: database "+prefix); got != 5 {
		t.Errorf("output names %d databases, want 5:\n%s", got, out.String())
	}
	for _, secret := range env {
		if secret != admin && strings.Contains(out.String(), secret) {
			t.Errorf("the output shows a password:\n%s", out.String())
		}
	}
	url := func(d pgroles.Database, r pgroles.Role, db string) string {
		u, err := pgroles.WithUser(admin, r, db)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	byName := map[string]pgroles.Database{}
	for _, d := range dbs {
		svc := strings.TrimPrefix(d.Name, prefix)
		byName[svc] = d
		if _, err := pgdb.MigrateURL(ctx, url(d, d.Owner, d.Name), migrations[svc], nil); err != nil {
			t.Fatalf("%s: the owner cannot apply the migrations: %v", svc, err)
		}
	}
	// Each app role reads its own tables.
	for svc, table := range map[string]string{"catalog": "products", "orders": "orders", "payments": "payments", "notifications": "notifications", "search": "products"} {
		d := byName[svc]
		conn, err := pgx.Connect(ctx, url(d, d.App, d.Name))
		if err != nil {
			t.Fatalf("%s app: %v", svc, err)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Errorf("%s app: SELECT FROM %s: %v", svc, table, err)
		}
		_ = conn.Close(ctx)
	}
	orders, payments := byName["orders"], byName["payments"]
	for _, r := range []pgroles.Role{orders.App, orders.Owner} {
		conn, err := pgx.Connect(ctx, url(orders, r, payments.Name))
		var pgErr *pgconn.PgError
		if err == nil {
			var n int
			err = conn.QueryRow(ctx, "SELECT count(*) FROM payments").Scan(&n)
			_ = conn.Close(ctx)
			t.Errorf("%s opened %s and read payments: %d rows, %v", r.Name, payments.Name, n, err)
			continue
		}
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("%s connecting to %s: %v, want permission denied (42501)", r.Name, payments.Name, err)
		}
	}
}

// TestRunRefusesMissingPasswords: a missing or short password is named
// (by its variable) before anything is created.
func TestRunRefusesMissingPasswords(t *testing.T) {
	t.Parallel()
	env := map[string]string{"PGROLES_ADMIN_URL": "postgres://nobody@127.0.0.1:1/postgres", "ORDERS_DB_OWNER_PASSWORD": "0123456789abcdef0"}
	var out bytes.Buffer
	err := run(context.Background(), []string{"orders"}, func(k string) string { return env[k] }, &out)
	if err == nil || !strings.Contains(err.Error(), "ORDERS_DB_APP_PASSWORD") || !strings.Contains(err.Error(), "password of 0 characters") {
		t.Errorf("got %v, want the missing ORDERS_DB_APP_PASSWORD named", err)
	}
	if err := run(context.Background(), []string{"orders"}, func(string) string { return "" }, &out); err == nil || !strings.Contains(err.Error(), "PGROLES_ADMIN_URL") {
		t.Errorf("got %v, want PGROLES_ADMIN_URL named", err)
	}
}

func drop(t *testing.T, admin string, dbs []pgroles.Database) {
	for _, d := range dbs {
		if err := pgroles.Drop(context.Background(), admin, d); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}
