package producthttp_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
	"github.com/shopfloor/shopfloor/pkg/cache"
	"github.com/shopfloor/shopfloor/pkg/httpcache"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/httpkit/openapitest"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/catalog/internal/producthttp"
	"github.com/shopfloor/shopfloor/services/catalog/internal/productsvc"
	"github.com/shopfloor/shopfloor/services/catalog/migrations"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// token is not a token: a header of just it (no "Bearer ") must be
// refused.
const token = "test-admin-token-0123456789"

// asOperator and asService are Authorization values that do replaces with
// an operator's or a service's real token from the bundle's issuer.
const (
	asOperator = "as-operator"
	asService  = "as-service"
)

// service is the header of a service client (products:batch).
var service = map[string]string{"Authorization": asService}

type bundle struct {
	srv *httptest.Server
	db  *testinfra.Database
	svc *productsvc.Service
	iss *authtest.Issuer
	// operator and service are Authorization values (asOperator, asService).
	operator, service string
}

// setup runs catalog's API on its own database and Redis prefix; rdb
// overrides the Redis client (a dead one for outage tests).
func setup(t testing.TB, rdb redis.UniversalClient) *bundle {
	t.Helper()
	return setupWith(t, rdb, httpcache.Policy{})
}

func setupWith(t testing.TB, rdb redis.UniversalClient, public httpcache.Policy, reg ...prometheus.Registerer) *bundle {
	t.Helper()
	cfg := cache.Config{}
	if len(reg) > 0 {
		cfg.Registerer = reg[0]
	}
	return setupCache(t, rdb, public, cfg)
}

// setupCache is setupWith with the cache's configuration (its namespace,
// class and breaker period are set here). The cache's Run runs until the
// test ends, as in the service.
func setupCache(t testing.TB, rdb redis.UniversalClient, public httpcache.Policy, cfg cache.Config) *bundle {
	t.Helper()
	db := testinfra.Postgres(t, migrations.FS)
	// A client of the test's own (rdb) writes under cfg.Namespace: give it
	// the testinfra prefix whose cleanup removes the keys (pointers have no
	// TTL). "t" is for clients that reach no Redis.
	prefix := cmp.Or(cfg.Namespace, "t")
	if rdb == nil {
		r := testinfra.Redis(t)
		rdb, prefix = r.Client, r.Prefix
	}
	log := slog.New(slog.DiscardHandler)
	svc, err := productsvc.New(db.Pool, func(load cache.Loader[catalogapi.Product]) (*cache.Cache[catalogapi.Product], error) {
		cfg.Namespace, cfg.Class, cfg.BreakerOpenFor = prefix, "product", time.Hour
		return cache.New(rdb, load, cfg, log)
	}, outbox.New(catalogapi.Stream), log, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	{
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- svc.Cache().Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("near cache: %v", err)
			}
		})
		testinfra.Eventually(t, 10*time.Second, func() error {
			if cfg.Near.Entities > 0 && !svc.Cache().NearSynced() {
				return errors.New("near cache not synced")
			}
			return nil
		})
	}
	iss := authtest.NewIssuer(t)
	authz, err := auth.NewVerifier(iss.Config("catalog"), "catalog", auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mux := httpkit.NewMux(httpkit.NewHealth(), http.NotFoundHandler())
	producthttp.Routes(mux, svc, producthttp.Config{Authz: authz, Log: log, Public: public})
	// Every request and answer is held to the API's contract.
	srv := httptest.NewServer(openapitest.Load(t, catalogapi.OpenAPI()).Handler(t,
		httpkit.Chain(mux, httpkit.LimitBody(httpkit.DefaultMaxBodyBytes))))
	t.Cleanup(srv.Close)
	return &bundle{srv: srv, db: db, svc: svc, iss: iss,
		operator: "Bearer " + iss.Operator(t, "catalog"), service: "Bearer " + iss.Service(t, "orders", "catalog")}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (b *bundle) do(t testing.TB, method, path string, body any, header map[string]string) resp {
	t.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	default:
		js, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, b.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		switch v {
		case asOperator:
			v = b.operator
		case asService:
			v = b.service
		}
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: data}
}

var admin = map[string]string{"Authorization": asOperator}

func withAdmin(extra map[string]string) map[string]string {
	h := map[string]string{"Authorization": asOperator}
	for k, v := range extra {
		h[k] = v
	}
	return h
}

func lamp(sku string) catalogapi.AdminProduct {
	return catalogapi.AdminProduct{
		SKU: sku, Category: "lamps", Images: []string{"https://img.example/lamp.jpg"},
		Translations: map[string]catalogapi.ProductText{
			"en-US": {Name: "Brass lamp", Description: "Warm light."},
			"de-DE": {Name: "Messinglampe", Description: "Warmes Licht."},
		},
		Prices: map[string]int64{"EUR": 4999, "USD": 5499},
	}
}

func (b *bundle) create(t testing.TB, p catalogapi.AdminProduct) catalogapi.AdminProduct {
	t.Helper()
	r := b.do(t, "POST", "/v1/admin/products", p, admin)
	if r.status != http.StatusCreated {
		t.Fatalf("create = %d %s", r.status, r.body)
	}
	var out catalogapi.AdminProduct
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	if r.header.Get("Location") != "/v1/admin/products/"+out.ID || r.header.Get("ETag") != `"v1"` {
		t.Fatalf("create headers = %v", r.header)
	}
	return out
}

func decode[T any](t testing.TB, r resp) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return v
}

func TestPublicReadCachingHeadersAndConditionalGet(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	p := b.create(t, lamp("LAMP-1"))

	r := b.do(t, "GET", "/v1/products/"+p.ID+"?currency=EUR", nil, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET = %d %s", r.status, r.body)
	}
	got := decode[catalogapi.Product](t, r)
	if got.Name != "Brass lamp" || got.Price != (catalogapi.Price{Currency: "EUR", AmountMinor: 4999}) || got.Version != 1 {
		t.Fatalf("product = %+v", got)
	}
	cc := r.header.Get("Cache-Control")
	for _, want := range []string{"public", "max-age=", "s-maxage=", "stale-while-revalidate=", "stale-if-error="} {
		if !strings.Contains(cc, want) {
			t.Errorf("Cache-Control %q lacks %s", cc, want)
		}
	}
	if sk := r.header.Get("Surrogate-Key"); sk != "product:"+p.ID+" category:lamps" || r.header.Get("xkey") != sk {
		t.Errorf("surrogate keys = %q / %q", sk, r.header.Get("xkey"))
	}
	if r.header.Get("Vary") != "Accept-Language" {
		t.Errorf("Vary = %q", r.header.Get("Vary"))
	}
	etag := r.header.Get("ETag")
	if !strings.HasPrefix(etag, `"`) {
		t.Fatalf("ETag = %q, want a strong validator", etag)
	}
	nm := b.do(t, "GET", "/v1/products/"+p.ID+"?currency=EUR", nil, map[string]string{"If-None-Match": etag})
	if nm.status != http.StatusNotModified || len(nm.body) != 0 || nm.header.Get("ETag") != etag {
		t.Fatalf("conditional GET = %d %q %v", nm.status, nm.body, nm.header)
	}
	// Other currency, other ETag.
	if usd := b.do(t, "GET", "/v1/products/"+p.ID+"?currency=USD", nil, nil); usd.header.Get("ETag") == etag || decode[catalogapi.Product](t, usd).Price.AmountMinor != 5499 {
		t.Fatalf("USD read: %s %v", usd.body, usd.header)
	}

	// A price change shows at once (the write moved the version pointer)
	// with a new ETag; the old one no longer matches.
	if r := b.do(t, "PUT", "/v1/admin/products/"+p.ID+"/prices/EUR", map[string]int64{"amount_minor": 3999}, withAdmin(map[string]string{"If-Match": `"v1"`})); r.status != http.StatusOK {
		t.Fatalf("price change = %d %s", r.status, r.body)
	}
	r = b.do(t, "GET", "/v1/products/"+p.ID+"?currency=EUR", nil, map[string]string{"If-None-Match": etag})
	if r.status != http.StatusOK || decode[catalogapi.Product](t, r).Price.AmountMinor != 3999 || decode[catalogapi.Product](t, r).Version != 2 {
		t.Fatalf("after the price change: %d %s", r.status, r.body)
	}
}

func TestLocaleAndCurrency(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	p := b.create(t, lamp("LAMP-2"))
	tests := []struct {
		name, query, acceptLanguage string
		status                      int
		wantName, wantProblem       string
	}{
		{"default", "", "", 200, "Brass lamp", ""},
		{"accept-language exact", "", "de-DE,en;q=0.5", 200, "Messinglampe", ""},
		{"accept-language by language", "", "de-AT", 200, "Messinglampe", ""},
		{"query wins", "?locale=en-US", "de-DE", 200, "Brass lamp", ""},
		{"missing translation falls back", "?locale=fr-FR", "", 200, "Brass lamp", ""},
		{"unknown locale", "?locale=xx-XX", "", 400, "", "unsupported-locale"},
		{"unknown currency", "?currency=JPY", "", 400, "", "unsupported-currency"},
		{"no price in currency", "?currency=GBP", "", 404, "", "no-price"},
	}
	for _, tt := range tests {
		r := b.do(t, "GET", "/v1/products/"+p.ID+tt.query, nil, map[string]string{"Accept-Language": tt.acceptLanguage})
		if r.status != tt.status {
			t.Errorf("%s: status %d, want %d: %s", tt.name, r.status, tt.status, r.body)
			continue
		}
		if tt.wantName != "" && decode[catalogapi.Product](t, r).Name != tt.wantName {
			t.Errorf("%s: name %q, want %q", tt.name, decode[catalogapi.Product](t, r).Name, tt.wantName)
		}
		if tt.wantProblem != "" {
			pr := decode[httpkit.Problem](t, r)
			if pr.Type != httpkit.ProblemBase+tt.wantProblem {
				t.Errorf("%s: problem %s, want %s", tt.name, pr.Type, tt.wantProblem)
			}
			if tt.status == 400 && !strings.Contains(pr.Detail, "supported:") {
				t.Errorf("%s: detail %q does not list the supported values", tt.name, pr.Detail)
			}
		}
	}
}

func TestAdminAuthAndPreconditions(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	for _, h := range []map[string]string{nil, {"Authorization": "Bearer wrong"}, {"Authorization": token}} {
		if r := b.do(t, "POST", "/v1/admin/products", lamp("LAMP-3"), h); r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" {
			t.Fatalf("admin with %v = %d", h, r.status)
		}
	}
	p := b.create(t, lamp("LAMP-3"))
	upd := lamp("LAMP-3")
	upd.Translations["en-US"] = catalogapi.ProductText{Name: "Brass lamp XL"}
	if r := b.do(t, "PUT", "/v1/admin/products/"+p.ID, upd, admin); r.status != http.StatusPreconditionRequired {
		t.Fatalf("update without If-Match = %d", r.status)
	}
	if r := b.do(t, "PUT", "/v1/admin/products/"+p.ID, upd, withAdmin(map[string]string{"If-Match": `"v7"`})); r.status != http.StatusPreconditionFailed {
		t.Fatalf("update with a stale If-Match = %d", r.status)
	}
	r := b.do(t, "PUT", "/v1/admin/products/"+p.ID, upd, withAdmin(map[string]string{"If-Match": `"v1"`}))
	if r.status != http.StatusOK || r.header.Get("ETag") != `"v2"` || r.header.Get("Cache-Control") != "private, no-store" {
		t.Fatalf("update = %d %v %s", r.status, r.header, r.body)
	}
	if r := b.do(t, "POST", "/v1/admin/products/"+p.ID+"/archive", nil, withAdmin(map[string]string{"If-Match": `"v2"`})); r.status != http.StatusOK {
		t.Fatalf("archive = %d %s", r.status, r.body)
	}
	r = b.do(t, "GET", "/v1/products/"+p.ID, nil, nil)
	if r.status != http.StatusNotFound || r.header.Get("Cache-Control") != "public, max-age=0, s-maxage=10" {
		t.Fatalf("archived product = %d, Cache-Control %q", r.status, r.header.Get("Cache-Control"))
	}
	// The admin API still shows it.
	if r := b.do(t, "GET", "/v1/admin/products/"+p.ID, nil, admin); r.status != http.StatusOK || decode[catalogapi.AdminProduct](t, r).Status != "archived" {
		t.Fatalf("admin read of archived = %d %s", r.status, r.body)
	}
	// Events: created, updated, archived with versions 1, 2, 3, keyed by id.
	rows, err := b.db.Pool.Query(context.Background(), `SELECT event_type, key FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var typ, key string
		if err := rows.Scan(&typ, &key); err != nil {
			t.Fatal(err)
		}
		if key != p.ID {
			t.Errorf("event key %s, want the product id", key)
		}
		got = append(got, typ)
	}
	if strings.Join(got, ",") != "product.created,product.updated,product.archived" {
		t.Fatalf("events = %v", got)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	neg := lamp("LAMP-4")
	neg.Prices = map[string]int64{"EUR": -5}
	badCur := lamp("LAMP-4")
	badCur.Prices = map[string]int64{"eur": 100}
	noEN := lamp("LAMP-4")
	delete(noEN.Translations, "en-US")
	badSKU := lamp("lamp 4")
	tests := []struct {
		name    string
		body    any
		status  int
		problem string
	}{
		{"negative price", neg, 422, "invalid-product"},
		{"bad currency code", badCur, 422, "invalid-product"},
		{"no default translation", noEN, 422, "invalid-product"},
		{"bad sku", badSKU, 422, "invalid-product"},
		{"unknown field", `{"sku":"LAMP-4","colour":"red"}`, 400, "unknown-field"},
		{"server-assigned id", `{"id":"x","sku":"LAMP-4"}`, 400, "invalid-field"},
		{"huge body", `{"sku":"` + strings.Repeat("A", 2<<20) + `"}`, 413, "body-too-large"},
	}
	for _, tt := range tests {
		r := b.do(t, "POST", "/v1/admin/products", tt.body, admin)
		if r.status != tt.status || !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
			t.Errorf("%s: %d %s, want %d problem", tt.name, r.status, r.header.Get("Content-Type"), tt.status)
			continue
		}
		if pr := decode[httpkit.Problem](t, r); pr.Type != httpkit.ProblemBase+tt.problem {
			t.Errorf("%s: problem %s, want %s", tt.name, pr.Type, tt.problem)
		}
	}
	for _, path := range []string{"/v1/products/not-a-uuid", "/v1/products:batch?ids=nope", "/v1/products?limit=1000", "/v1/products?page_token=zzz"} {
		if r := b.do(t, "GET", path, nil, service); r.status/100 != 4 {
			t.Errorf("GET %s = %d, want 4xx", path, r.status)
		}
	}
	var products, events int
	if err := b.db.Pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM products), (SELECT count(*) FROM outbox)`).Scan(&products, &events); err != nil {
		t.Fatal(err)
	}
	if products != 0 || events != 0 {
		t.Fatalf("bad input wrote %d products and %d events", products, events)
	}
}

func TestListPaginationAndBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)
	if err := productsvc.Seed(ctx, b.db.Pool, outbox.New(catalogapi.Stream), 45, time.Now); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	token, pages := "", 0
	for {
		r := b.do(t, "GET", "/v1/products?limit=20&page_token="+token, nil, nil)
		if r.status != http.StatusOK {
			t.Fatalf("list = %d %s", r.status, r.body)
		}
		page := decode[catalogapi.ProductList](t, r)
		pages++
		for _, p := range page.Products {
			if seen[p.ID] {
				t.Fatalf("product %s on two pages", p.ID)
			}
			seen[p.ID] = true
		}
		if page.NextPageToken == "" {
			break
		}
		token = page.NextPageToken
	}
	if len(seen) != 45 || pages != 3 {
		t.Fatalf("paged through %d products in %d pages, want 45 in 3", len(seen), pages)
	}
	r := b.do(t, "GET", "/v1/products?category=lamps&limit=100", nil, nil)
	for _, p := range decode[catalogapi.ProductList](t, r).Products {
		if p.Category != "lamps" {
			t.Fatalf("category filter returned %s", p.Category)
		}
	}

	var ids []string
	for id := range seen {
		ids = append(ids, id)
		if len(ids) == 3 {
			break
		}
	}
	missing := "01234567-89ab-7def-8123-456789abcdef"
	r = b.do(t, "GET", "/v1/products:batch?currency=USD&ids="+strings.Join(append(ids, missing), ","), nil, service)
	batch := decode[catalogapi.ProductBatch](t, r)
	if r.status != 200 || len(batch.Products) != 3 || len(batch.Missing) != 1 || batch.Missing[0] != missing || batch.Products[0].Price.Currency != "USD" {
		t.Fatalf("batch = %d %+v", r.status, batch)
	}
	if r.header.Get("Cache-Control") != "private, no-store" {
		t.Fatalf("batch Cache-Control = %q; prices for orders must never come from a shared cache", r.header.Get("Cache-Control"))
	}
	var events int
	if err := b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE event_type = 'product.created'`).Scan(&events); err != nil || events != 45 {
		t.Fatalf("seed wrote %d product.created events (%v), want 45", events, err)
	}
}

// TestRedisDownStillServes: with Redis unreachable every read answers 200
// with the current version.
func TestRedisDownStillServes(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	dead := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: 50 * time.Millisecond})
	defer dead.Close()
	b := setup(t, dead)
	p := b.create(t, lamp("LAMP-5"))
	for i := range 20 {
		r := b.do(t, "GET", "/v1/products/"+p.ID, nil, nil)
		if r.status != http.StatusOK || decode[catalogapi.Product](t, r).Version != int64(1+i/10) {
			t.Fatalf("read %d with Redis down = %d %s", i, r.status, r.body)
		}
		if i == 9 {
			if r := b.do(t, "PUT", "/v1/admin/products/"+p.ID+"/prices/EUR", map[string]int64{"amount_minor": 100}, withAdmin(map[string]string{"If-Match": `"v1"`})); r.status != http.StatusOK {
				t.Fatalf("price change with Redis down = %d %s", r.status, r.body)
			}
		}
	}
}

// TestRedisOutageMidRun: Redis pauses, then dies, while catalog serves.
// Every read answers 200 with the current version; the latency figure is
// logged (the breaker keeps it near the database's, not the Redis
// timeout's), never asserted.
func TestRedisOutageMidRun(t *testing.T) {
	t.Parallel()
	r := testinfra.Redis(t)
	opts, err := cache.ClientOptions(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testinfra.NewProxy(t, opts.Addr)
	opts.Addr = proxy.Addr()
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	b := setupCache(t, rdb, httpcache.Policy{}, cache.Config{Namespace: r.Prefix})
	p := b.create(t, lamp("LAMP-6"))
	read := func(want int64) time.Duration {
		start := time.Now()
		r := b.do(t, "GET", "/v1/products/"+p.ID, nil, nil)
		took := time.Since(start)
		if r.status != http.StatusOK || decode[catalogapi.Product](t, r).Version != want {
			t.Fatalf("read = %d %s, want version %d", r.status, r.body, want)
		}
		return took
	}
	read(1) // cached now
	for _, step := range []struct {
		phase string
		cut   func()
	}{{"paused", proxy.Blackhole}, {"killed", proxy.Down}} {
		phase := step.phase
		step.cut()
		var lat []time.Duration
		for range 50 {
			lat = append(lat, read(1))
		}
		slices.Sort(lat)
		t.Logf("Redis %s: p50 %s, p99 %s over %d reads", phase, lat[len(lat)/2], lat[len(lat)*99/100], len(lat))
		proxy.Up()
	}
	// A write while Redis is unreachable is visible at once: reads fail
	// open to PostgreSQL.
	proxy.Down()
	if r := b.do(t, "PUT", "/v1/admin/products/"+p.ID+"/prices/EUR", map[string]int64{"amount_minor": 10}, withAdmin(map[string]string{"If-Match": `"v1"`})); r.status != http.StatusOK {
		t.Fatalf("write with Redis down = %d %s", r.status, r.body)
	}
	read(2)
}

func TestBatchByIDsAndSKUs(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	a := b.create(t, lamp("LAMP-A"))
	bb := b.create(t, lamp("LAMP-B"))
	gone := b.create(t, lamp("LAMP-GONE"))
	if r := b.do(t, "POST", "/v1/admin/products/"+gone.ID+"/archive", nil, withAdmin(map[string]string{"If-Match": `"v1"`})); r.status != http.StatusOK {
		t.Fatalf("archive = %d %s", r.status, r.body)
	}
	usdOnly := lamp("LAMP-USD")
	usdOnly.Prices = map[string]int64{"USD": 1999}
	b.create(t, usdOnly)
	unknownID := "01234567-89ab-7def-8123-456789abcdef"
	many := func(n int, v string) string { return strings.TrimSuffix(strings.Repeat(v+",", n), ",") }

	tests := []struct {
		name        string
		query       string
		status      int
		wantSKUs    []string // products, in order
		wantMissing []string
		wantDetail  string // a phrase of the problem's detail (status 400)
	}{
		{name: "ids ok", query: "ids=" + a.ID + "," + bb.ID, status: 200, wantSKUs: []string{"LAMP-A", "LAMP-B"}},
		{name: "ids with an unknown and an archived id", query: "ids=" + unknownID + "," + a.ID + "," + gone.ID, status: 200,
			wantSKUs: []string{"LAMP-A"}, wantMissing: []string{unknownID, gone.ID}},
		{name: "skus ok", query: "skus=LAMP-B,LAMP-A&locale=de-DE", status: 200, wantSKUs: []string{"LAMP-B", "LAMP-A"}},
		{name: "missing sku", query: "skus=LAMP-A,NOPE-1", status: 200, wantSKUs: []string{"LAMP-A"}, wantMissing: []string{"NOPE-1"}},
		{name: "archived sku", query: "skus=LAMP-GONE", status: 200, wantMissing: []string{"LAMP-GONE"}},
		{name: "sku without a price in the currency", query: "currency=EUR&skus=LAMP-USD,LAMP-A", status: 200,
			wantSKUs: []string{"LAMP-A"}, wantMissing: []string{"LAMP-USD"}},
		{name: "sku priced in the currency", query: "currency=USD&skus=LAMP-USD", status: 200, wantSKUs: []string{"LAMP-USD"}},
		{name: "ids and skus: ids' products first, then the skus'", query: "skus=LAMP-A,NOPE-1&ids=" + bb.ID + "," + unknownID, status: 200,
			wantSKUs: []string{"LAMP-B", "LAMP-A"}, wantMissing: []string{unknownID, "NOPE-1"}},
		{name: "ids and skus, 100 in all", query: "ids=" + many(50, a.ID) + "&skus=" + many(50, "LAMP-B"), status: 200,
			wantSKUs: append(strings.Split(many(50, "LAMP-A"), ","), strings.Split(many(50, "LAMP-B"), ",")...)},
		{name: "ids and skus, 101 in all", query: "ids=" + many(51, a.ID) + "&skus=" + many(50, "LAMP-B"), status: 400,
			wantDetail: "name 101 products together, at most 100"},
		{name: "ids and skus, one empty", query: "ids=&skus=LAMP-A", status: 400, wantDetail: "1–100 product ids"},
		{name: "neither", query: "currency=EUR", status: 400, wantDetail: "send ids (product ids), skus, or both"},
		{name: "more than 100 ids", query: "ids=" + many(101, a.ID), status: 400, wantDetail: "1–100 product ids"},
		{name: "more than 100 skus", query: "skus=" + many(101, "LAMP-A"), status: 400, wantDetail: "1–100 skus"},
		{name: "100 skus", query: "skus=" + many(100, "LAMP-A"), status: 200, wantSKUs: strings.Split(many(100, "LAMP-A"), ",")},
		{name: "empty skus", query: "skus=", status: 400, wantDetail: "1–100 skus"},
		{name: "malformed sku", query: "skus=LAMP-A,lamp%20a", status: 400, wantDetail: "skus must be skus"},
		{name: "malformed id", query: "ids=nope", status: 400, wantDetail: "ids must be product ids"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := b.do(t, "GET", "/v1/products:batch?"+tt.query, nil, service)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.status != http.StatusOK {
				if !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
					t.Fatalf("Content-Type %q, want a problem", r.header.Get("Content-Type"))
				}
				pr := decode[httpkit.Problem](t, r)
				if pr.Type != httpkit.ProblemBase+"invalid-query" || !strings.Contains(pr.Detail, tt.wantDetail) {
					t.Fatalf("problem %s %q, want invalid-query saying %q", pr.Type, pr.Detail, tt.wantDetail)
				}
				return
			}
			batch := decode[catalogapi.ProductBatch](t, r)
			var skus []string
			for _, p := range batch.Products {
				skus = append(skus, p.SKU)
			}
			if !slices.Equal(skus, tt.wantSKUs) || !slices.Equal(batch.Missing, tt.wantMissing) {
				t.Fatalf("products %v missing %v, want %v missing %v", skus, batch.Missing, tt.wantSKUs, tt.wantMissing)
			}
			if r.header.Get("Cache-Control") != "private, no-store" {
				t.Fatalf("Cache-Control = %q", r.header.Get("Cache-Control"))
			}
		})
	}
	// The de-DE read renders the German name.
	r := b.do(t, "GET", "/v1/products:batch?locale=de-DE&skus=LAMP-A", nil, service)
	if got := decode[catalogapi.ProductBatch](t, r); len(got.Products) != 1 || got.Products[0].Name != "Messinglampe" || got.Products[0].ID != a.ID {
		t.Fatalf("de-DE batch by sku = %+v", got)
	}
}
