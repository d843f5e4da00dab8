package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{"ROLES": "api,relay,gossip", "ADMIN_TOKEN": "short", "CATALOG_PARTITIONS": "0", "CACHE_SOFT_TTL": "soon"}
	err := run(context.Background(), []string{"catalog"}, func(k string) string { return env[k] }, &testinfra.Buffer{})
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for _, want := range []string{
		"DATABASE_URL: required, not set",
		`CACHE_SOFT_TTL: not a duration`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	env = map[string]string{"DATABASE_URL": "postgres://x", "ROLES": "api,relay,gossip", "ADMIN_TOKEN": "short", "CATALOG_PARTITIONS": "0", "CACHE_NEAR_TTL": "1h"}
	err = run(context.Background(), []string{"catalog"}, func(k string) string { return env[k] }, &testinfra.Buffer{})
	for _, want := range []string{`ROLES: unknown role "gossip"`, "ADMIN_TOKEN: required by the api role", "NATS_URL: required by the relay and invalidation roles", "CATALOG_PARTITIONS: must be", "CACHE_NEAR_TTL: between 1ms and 1m"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if err := run(context.Background(), []string{"catalog", "dlq", "list"}, func(string) string { return "" }, &testinfra.Buffer{}); err == nil || !strings.Contains(err.Error(), "NATS_URL: required") {
		t.Errorf("dlq without NATS_URL: %v", err)
	}
	for _, args := range [][]string{{"catalog", "dance"}, {"catalog", "seed", "--products", "0"}, {"catalog", "seed", "--bogus"}} {
		if err := run(context.Background(), args, func(string) string { return "" }, &testinfra.Buffer{}); err == nil || !strings.Contains(err.Error(), "usage") {
			t.Errorf("%v: err = %v, want usage", args, err)
		}
	}
}

// TestMigrateAndSeed runs the migrate role on an empty database, then seeds
// 10 000 products (the "in seconds"; the time is logged, not
// asserted).
func TestMigrateAndSeed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, nil)
	env := map[string]string{"DATABASE_URL": db.URL} // migrate and seed need nothing else
	getenv := func(k string) string { return env[k] }
	if err := run(ctx, []string{"catalog", "migrate"}, getenv, &testinfra.Buffer{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := run(ctx, []string{"catalog", "seed", "--products", "10000"}, getenv, &testinfra.Buffer{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded 10 000 products in %s", time.Since(start))
	var products, events int
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM products WHERE status = 'active'), (SELECT count(*) FROM outbox)`).Scan(&products, &events); err != nil {
		t.Fatal(err)
	}
	if products != 10000 || events != 10000 {
		t.Fatalf("seed wrote %d products and %d events, want 10000 each", products, events)
	}
}
