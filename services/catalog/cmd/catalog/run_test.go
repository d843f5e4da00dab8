package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{"ROLES": "api,relay,gossip", "CATALOG_PARTITIONS": "0", "CACHE_SOFT_TTL": "soon"}
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
	env = map[string]string{"DATABASE_URL": "postgres://x", "ROLES": "api,relay,gossip", "CATALOG_PARTITIONS": "0", "CACHE_NEAR_TTL": "1h"}
	err = run(context.Background(), []string{"catalog"}, func(k string) string { return env[k] }, &testinfra.Buffer{})
	for _, want := range []string{`ROLES: unknown role "gossip"`, "AUTH_ISSUER: required", "NATS_URL: required by the relay and consumer roles", "CATALOG_PARTITIONS: must be", "CACHE_NEAR_TTL: between 1ms and 1m"} {
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

// TestRunRefusesCDNPurgeURLsWithoutAUsableSecret: the CDN refuses purges
// without the shared secret (ADR 0037), so CDN_PURGE_URLS without a usable
// CDN_PURGE_SECRET is a configuration error at start, whose message never
// repeats the value; without CDN_PURGE_URLS no secret is needed.
func TestRunRefusesCDNPurgeURLsWithoutAUsableSecret(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, urls, secret, want string
	}{
		{"unset", "http://varnish:80/", "", "CDN_PURGE_SECRET: required with CDN_PURGE_URLS"},
		{"short", "http://varnish:80/", "short-secret-15", "CDN_PURGE_SECRET: required with CDN_PURGE_URLS, at least 16"},
		{"space", "http://varnish:80/", "a secret with spaces in it", "CDN_PURGE_SECRET: printable ASCII"},
		{"newline", "http://varnish:80/", "0123456789abcdef\r\nX-Evil: 1", "CDN_PURGE_SECRET: printable ASCII"},
		{"good", "http://varnish:80/", "0123456789abcdef0123", ""},
		{"no CDN", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"DATABASE_URL": "postgres://x", "ROLES": "consumer", "CATALOG_PARTITIONS": "0", "CDN_PURGE_URLS": tc.urls, "CDN_PURGE_SECRET": tc.secret}
			err := run(context.Background(), []string{"catalog"}, func(k string) string { return env[k] }, &testinfra.Buffer{})
			// CATALOG_PARTITIONS=0 makes every case fail before it connects.
			if err == nil || !strings.Contains(err.Error(), "CATALOG_PARTITIONS") {
				t.Fatalf("err = %v, want a configuration error", err)
			}
			if got := strings.Contains(err.Error(), "CDN_PURGE_SECRET"); got != (tc.want != "") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
				t.Errorf("the error repeats the secret: %v", err)
			}
		})
	}
}

// TestMigrateThenSeedWritesTenThousandProductsAndTheirEvents runs the migrate role on an empty database, then seeds
// 10 000 products (the "in seconds"; the time is logged, not
// asserted).
func TestMigrateThenSeedWritesTenThousandProductsAndTheirEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.PostgresRoles(t, nil)
	env := map[string]string{"DATABASE_URL": db.URL} // migrate and seed need nothing else
	getenv := func(k string) string { return env[k] }
	if err := run(ctx, []string{"catalog", "migrate"}, db.AsOwner(getenv), &testinfra.Buffer{}); err != nil {
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

// TestAPIRoleServesPublicAndAdminListenersApart runs the api role and checks its two listeners (ADR
// 0023): the public one serves product reads, a /readyz without details
// and 404 for /metrics and /v1/admin; the admin one serves the admin API
// (with the token), /metrics and /readyz with its checks.
func TestAPIRoleServesPublicAndAdminListenersApart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := testinfra.PostgresRoles(t, nil)
	rdb := testinfra.Redis(t)
	// The service writes its cache under its own namespace ("shopfloor"),
	// not the test's prefix: remove the created product's keys (version
	// pointers have no TTL) once the service has stopped.
	var created string
	t.Cleanup(func() {
		if created == "" {
			return
		}
		ctx := context.Background()
		iter := rdb.Client.Scan(ctx, 0, "shopfloor:product:*"+created+"*", 500).Iterator()
		for iter.Next(ctx) {
			if err := rdb.Client.Del(ctx, iter.Val()).Err(); err != nil {
				t.Errorf("delete %s: %v", iter.Val(), err)
			}
		}
		if err := iter.Err(); err != nil {
			t.Errorf("find the product's cache keys: %v", err)
		}
	})
	iss := authtest.NewIssuer(t)
	token := iss.Operator(t, "catalog")
	env := map[string]string{"DATABASE_URL": db.URL, "REDIS_URL": rdb.URL, "ROLES": "api", "AUTH_ISSUER": iss.URL, "LOG_LEVEL": "WARN"}
	getenv := func(k string) string { return env[k] }
	if err := run(ctx, []string{"catalog", "migrate"}, db.AsOwner(getenv), &testinfra.Buffer{}); err != nil {
		t.Fatal(err)
	}
	svc := testinfra.StartService(t, run, "catalog", env)
	public, admin := svc.Public, svc.Admin
	testinfra.WaitReady(t, public+"/readyz", 30*time.Second)
	testinfra.CheckListeners(t, public, admin, "/v1/admin/products/x", "/v1/admin/cache/bypass")

	// A product created on the admin listener is read on the public one.
	body, _ := json.Marshal(catalogapi.AdminProduct{SKU: "LAMP-ADMIN", Category: "lamps", Images: []string{}, Status: "active",
		Translations: map[string]catalogapi.ProductText{"en-US": {Name: "Lamp", Description: "A lamp."}},
		Prices:       map[string]int64{"EUR": 4999}})
	send := func(base string, auth string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/admin/products", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if st, b := send(public, token); st != http.StatusNotFound {
		t.Fatalf("POST /v1/admin/products on the public listener, with the token = %d %s, want 404", st, b)
	}
	if st, b := send(admin, ""); st != http.StatusUnauthorized {
		t.Fatalf("POST /v1/admin/products on the admin listener without the token = %d %s, want 401", st, b)
	}
	st, b := send(admin, token)
	var p catalogapi.AdminProduct
	if err := json.Unmarshal(b, &p); st != http.StatusCreated || err != nil {
		t.Fatalf("POST /v1/admin/products on the admin listener = %d %s", st, b)
	}
	created = p.ID
	resp, err := http.Get(public + "/v1/products/" + p.ID + "?currency=EUR")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/products/%s on the public listener = %d", p.ID, resp.StatusCode)
	}
}

func TestHelpListsTheCommandsAndRolesInTheSharedShape(t *testing.T) {
	t.Parallel()
	testinfra.CheckHelp(t, run, "catalog")
}
