package orderhttp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/httpkit/openapitest"
	"github.com/shopfloor/shopfloor/pkg/idempotency"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi/catalogtest"
	"github.com/shopfloor/shopfloor/services/orders/internal/orderhttp"
	"github.com/shopfloor/shopfloor/services/orders/internal/ordersvc"
	"github.com/shopfloor/shopfloor/services/orders/migrations"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

type bundle struct {
	srv     *httptest.Server
	db      *testinfra.Database
	catalog *catalogtest.Catalog
	proxy   *testinfra.Proxy
	svc     *ordersvc.Service
	iss     *authtest.Issuer
	// callers are Authorization values by authtest caller name; the
	// owner is cust-42, whose token do sends unless told otherwise.
	callers map[string]string
	// Two products: a (ordered by id) and b (ordered by sku).
	a, b catalogapi.AdminProduct
}

// setup runs orders' HTTP API over its own database, pricing through the
// real catalog (catalogtest) behind a proxy the test can cut.
func setup(t testing.TB, opts ...func(*orderhttp.Config)) *bundle {
	t.Helper()
	return setupPricer(t, nil, opts...)
}

// setupPricer is setup with catalog's client wrapped by wrap (nil: as is).
func setupPricer(t testing.TB, wrap func(ordersvc.Pricer) ordersvc.Pricer, opts ...func(*orderhttp.Config)) *bundle {
	t.Helper()
	db := testinfra.Postgres(t, migrations.FS)
	cat := catalogtest.Start(t)
	proxy := testinfra.NewProxy(t, strings.TrimPrefix(cat.URL, "http://"))
	client, err := catalogapi.NewClient(catalogapi.ClientConfig{BaseURL: "http://" + proxy.Addr(), Timeout: 300 * time.Millisecond,
		Attempts: 2, BreakerFailures: 3, BreakerOpenFor: time.Hour, Registerer: prometheus.NewRegistry(), Name: "test",
		HTTPClient: &http.Client{Transport: cat.ServiceTransport(t)}})
	if err != nil {
		t.Fatal(err)
	}
	var pricer ordersvc.Pricer = client
	if wrap != nil {
		pricer = wrap(client)
	}
	svc, err := ordersvc.New(db.Pool, pricer, outbox.New(ordersapi.Stream), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	store, err := idempotency.New(idempotency.Config{StoredHeaders: orderhttp.StoredHeaders(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	iss := authtest.NewIssuer(t)
	authz, err := auth.NewVerifier(iss.Config("orders"), "orders", auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mux := httpkit.NewMux(httpkit.NewHealth(), http.NotFoundHandler())
	cfg := orderhttp.Config{Authz: authz, Log: log, Idempotency: store}
	for _, opt := range opts {
		opt(&cfg)
	}
	orderhttp.Routes(mux, svc, cfg)
	// Every request and answer is held to the API's contract.
	srv := httptest.NewServer(openapitest.Load(t, ordersapi.OpenAPI()).Handler(t,
		httpkit.Chain(mux, httpkit.LimitBody(httpkit.DefaultMaxBodyBytes))))
	t.Cleanup(srv.Close)
	b := &bundle{srv: srv, db: db, catalog: cat, proxy: proxy, svc: svc, iss: iss, callers: iss.Callers(t, "orders", "cust-42")}
	b.a = cat.Add(t, catalogtest.Product{SKU: "MUG-RED", Name: "Red mug", Prices: map[string]int64{"EUR": 1250, "USD": 1400}})
	b.b = cat.Add(t, catalogtest.Product{SKU: "TEA-GREEN", Name: "Green tea", Prices: map[string]int64{"EUR": 499}})
	return b
}

func (b *bundle) order() ordersapi.CreateOrder {
	return ordersapi.CreateOrder{
		CustomerID: "cust-42", CustomerEmail: "ada@example.com", Currency: "EUR",
		Items:    []ordersapi.LineInput{{ProductID: b.a.ID, Quantity: 2}, {SKU: b.b.SKU, Quantity: 3}},
		Shipping: ordersapi.Address{Name: "Ada Lovelace", Line1: "1 Main St", City: "Berlin", PostalCode: "10115", Country: "DE"},
	}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (b *bundle) do(t *testing.T, method, path string, body any, header map[string]string) resp {
	t.Helper()
	var rd io.Reader = http.NoBody
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
	req, err := http.NewRequest(method, b.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", b.callers[authtest.Owner])
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if req.Header.Get("Authorization") == "" {
		req.Header.Del("Authorization")
	}
	res, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: out}
}

func key(k string) map[string]string { return map[string]string{"Idempotency-Key": k} }

func decode[T any](t *testing.T, r resp) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

// counts returns the number of orders, order lines, outbox events and
// idempotency keys.
func (b *bundle) counts(t *testing.T) [4]int {
	t.Helper()
	var c [4]int
	if err := b.db.Pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM orders), (SELECT count(*) FROM order_items),
		(SELECT count(*) FROM outbox), (SELECT count(*) FROM idempotency_keys)`).Scan(&c[0], &c[1], &c[2], &c[3]); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPlaceOrderPricesOnceAndCommitsOrderEventAndKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	before := b.catalog.Requests()
	r := b.do(t, "POST", "/v1/orders", b.order(), key("k-1"))
	if r.status != http.StatusCreated {
		t.Fatalf("POST = %d %s", r.status, r.body)
	}
	// One line by product id and one by sku: one catalog call prices both.
	if n := b.catalog.Requests() - before; n != 1 {
		t.Fatalf("the checkout made %d catalog calls, want 1", n)
	}
	o := decode[ordersapi.Order](t, r)
	if r.header.Get("Location") != "/v1/orders/"+o.ID || r.header.Get("ETag") != `"1"` || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("headers: %v", r.header)
	}
	if o.Status != ordersapi.StatusPendingPayment || o.Version != 1 || o.TotalMinor != 2*1250+3*499 || o.Currency != "EUR" ||
		len(o.Items) != 2 || o.Items[0].Name != "Red mug" || o.Items[1].ProductID != b.b.ID || o.Items[1].UnitPriceMinor != 499 ||
		o.Items[0].CatalogVersion != b.a.Version {
		t.Fatalf("order: %+v", o)
	}
	// The read is strong and private.
	g := b.do(t, "GET", "/v1/orders/"+o.ID, nil, nil)
	if g.status != http.StatusOK || g.header.Get("Cache-Control") != "no-store" || g.header.Get("ETag") != `"1"` {
		t.Fatalf("GET = %d %v", g.status, g.header)
	}
	if got := decode[ordersapi.Order](t, g); got.ID != o.ID || got.TotalMinor != o.TotalMinor || len(got.Items) != 2 {
		t.Fatalf("GET body: %+v", got)
	}
	// One order.placed in the outbox, keyed by order id, at the row's version.
	var (
		evKey, typ string
		payload    []byte
	)
	if err := b.db.Pool.QueryRow(context.Background(), `SELECT key, event_type, payload FROM outbox`).Scan(&evKey, &typ, &payload); err != nil {
		t.Fatal(err)
	}
	ev, err := events.Unmarshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	var placed ordersapi.OrderPlaced
	if err := ev.DecodeData(&placed); err != nil {
		t.Fatal(err)
	}
	if evKey != o.ID || typ != ordersapi.EventOrderPlaced || ev.Subject != o.ID || ev.AggregateVersion != 1 ||
		placed.TotalMinor != o.TotalMinor || placed.CustomerEmail != "ada@example.com" || len(placed.Items) != 2 {
		t.Fatalf("event: key %s type %s %+v %+v", evKey, typ, ev, placed)
	}
	if c := b.counts(t); c != [4]int{1, 2, 1, 1} {
		t.Fatalf("rows (orders, lines, outbox, keys) = %v", c)
	}
	// Unknown and malformed ids are 404, and so is the order's own id in
	// any form but the canonical one (one order, one URL).
	for _, id := range []string{"0192f5d2-8c1e-7000-8000-000000000001", "nope", strings.ToUpper(o.ID),
		"{" + o.ID + "}", "urn:uuid:" + o.ID, strings.ReplaceAll(o.ID, "-", "")} {
		if r := b.do(t, "GET", "/v1/orders/"+id, nil, nil); r.status != http.StatusNotFound {
			t.Errorf("GET %s = %d", id, r.status)
		}
	}
}

// TestConcurrentSameKey: 50 concurrent POSTs with one key and body create
// one order and one event; every answer is the 201 or its byte-identical
// replay, or a 409 while the first is in flight. A retry of the 409s
// replays. The same key with another body is 422.
func TestConcurrentSameKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body, err := json.Marshal(b.order())
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	results := make([]resp, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			results[i] = b.do(t, "POST", "/v1/orders", string(body), key("same-key"))
		})
	}
	close(start)
	wg.Wait()
	var created, replayed, inFlight int
	var first []byte
	for _, r := range results {
		switch {
		case r.status == http.StatusCreated && r.header.Get("Idempotent-Replayed") == "true":
			replayed++
		case r.status == http.StatusCreated:
			created++
			first = r.body
		case r.status == http.StatusConflict:
			inFlight++
		default:
			t.Fatalf("unexpected answer %d %s", r.status, r.body)
		}
	}
	t.Logf("created %d, replayed %d, in flight (409) %d", created, replayed, inFlight)
	if created != 1 || created+replayed+inFlight != n {
		t.Fatalf("created %d, replayed %d, in flight %d", created, replayed, inFlight)
	}
	for _, r := range results {
		if r.status == http.StatusCreated && !bytes.Equal(r.body, first) {
			t.Fatalf("replay differs:\n%s\n%s", r.body, first)
		}
	}
	again := b.do(t, "POST", "/v1/orders", string(body), key("same-key"))
	if again.status != http.StatusCreated || !bytes.Equal(again.body, first) || again.header.Get("Location") == "" {
		t.Fatalf("retry after completion = %d %s", again.status, again.body)
	}
	if c := b.counts(t); c != [4]int{1, 2, 1, 1} {
		t.Fatalf("rows (orders, lines, outbox, keys) = %v", c)
	}
	other := b.order()
	other.Items[0].Quantity = 5
	if r := b.do(t, "POST", "/v1/orders", other, key("same-key")); r.status != http.StatusUnprocessableEntity ||
		!strings.Contains(string(r.body), "idempotency-key-reused") {
		t.Fatalf("same key, other body = %d %s", r.status, r.body)
	}
	// Keys are scoped by the authenticated caller: another customer's
	// same key is their own (and their order is theirs, from the token).
	theirs := b.order()
	theirs.CustomerID = ""
	if r := b.do(t, "POST", "/v1/orders", theirs, map[string]string{"Idempotency-Key": "same-key", "Authorization": b.callers[authtest.OtherCustomer]}); r.status != http.StatusCreated ||
		r.header.Get("Idempotent-Replayed") != "" || decode[ordersapi.Order](t, r).CustomerID != "cust-42-other" {
		t.Fatalf("other customer's key = %d %v %s", r.status, r.header, r.body)
	}
	if c := b.counts(t); c != [4]int{2, 4, 2, 2} {
		t.Fatalf("rows after the other client = %v", c)
	}
}

// TestBadInputGetsAProblemNamingTheFieldAndWritesNothing: every invalid request gets a 4xx problem naming the field,
// and nothing is written.
func TestBadInputGetsAProblemNamingTheFieldAndWritesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	mut := func(f func(*ordersapi.CreateOrder)) ordersapi.CreateOrder {
		o := b.order()
		f(&o)
		return o
	}
	cases := []struct {
		name   string
		body   any
		header map[string]string
		status int
		class  string
		field  string
	}{
		{"no key", b.order(), nil, 400, "idempotency-key-missing", ""},
		{"malformed JSON", `{"customer_id": `, key("k"), 400, "malformed-json", ""},
		{"unknown field", `{"customer_id": "c", "coupon": "FREE"}`, key("k"), 400, "unknown-field", ""},
		{"wrong type", `{"items": "many"}`, key("k"), 400, "invalid-field", ""},
		{"quantity 0", mut(func(o *ordersapi.CreateOrder) { o.Items[0].Quantity = 0 }), key("k"), 422, "invalid-order", "#/items/0/quantity"},
		{"quantity 101", mut(func(o *ordersapi.CreateOrder) { o.Items[1].Quantity = 101 }), key("k"), 422, "invalid-order", "#/items/1/quantity"},
		{"unknown currency", mut(func(o *ordersapi.CreateOrder) { o.Currency = "JPY" }), key("k"), 422, "invalid-order", "#/currency"},
		{"bad email", mut(func(o *ordersapi.CreateOrder) { o.CustomerEmail = "nobody" }), key("k"), 422, "invalid-order", "#/customer_email"},
		{"empty city", mut(func(o *ordersapi.CreateOrder) { o.Shipping.City = "" }), key("k"), 422, "invalid-order", "#/shipping_address/city"},
		{"unknown product", mut(func(o *ordersapi.CreateOrder) { o.Items[0].ProductID = "0192f5d2-8c1e-7000-8000-00000000beef" }), key("k"), 422, "not-on-sale", "#/items/0/product_id"},
		{"unknown sku", mut(func(o *ordersapi.CreateOrder) { o.Items[1].SKU = "NO-SUCH-SKU" }), key("k"), 422, "not-on-sale", "#/items/1/sku"},
		{"no price in currency", mut(func(o *ordersapi.CreateOrder) { o.Currency = "USD" }), key("k"), 422, "not-on-sale", "#/items/1/sku"},
		{"too large", `{"customer_id": "` + strings.Repeat("x", 70<<10) + `"}`, key("k"), 413, "body-too-large", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := b.do(t, "POST", "/v1/orders", tc.body, tc.header)
			if r.status != tc.status || r.header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("= %d %s %s", r.status, r.header.Get("Content-Type"), r.body)
			}
			p := decode[*httpkit.Problem](t, r)
			if p.Class() != tc.class {
				t.Fatalf("class %q, want %q: %s", p.Class(), tc.class, r.body)
			}
			if tc.field != "" && (len(p.Errors) == 0 || p.Errors[0].Pointer != tc.field) {
				t.Fatalf("errors %+v, want pointer %s", p.Errors, tc.field)
			}
		})
	}
	// An archived product is not on sale either.
	b.catalog.Archive(t, b.a)
	r := b.do(t, "POST", "/v1/orders", b.order(), key("k"))
	if p := decode[*httpkit.Problem](t, r); r.status != 422 || len(p.Errors) != 1 || p.Errors[0].Pointer != "#/items/0/product_id" {
		t.Fatalf("archived product = %d %s", r.status, r.body)
	}
	if c := b.counts(t); c != [4]int{} {
		t.Fatalf("bad input wrote rows (orders, lines, outbox, keys) = %v", c)
	}
}

// TestCatalogDownAnswers503AndTheOpenBreakerStopsCalls: with catalog down, checkout answers 503 with
// Retry-After and writes nothing; once the breaker is open, requests fail
// without reaching catalog even when it is back (the breaker's open time
// is an hour in this test); the same key succeeds after recovery.
func TestCatalogDownAnswers503AndTheOpenBreakerStopsCalls(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.proxy.Down()
	for i := range 3 { // BreakerFailures = 3 attempts (2 per request)
		r := b.do(t, "POST", "/v1/orders", b.order(), key("k-down"))
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" ||
			decode[*httpkit.Problem](t, r).Class() != "catalog-unavailable" {
			t.Fatalf("request %d with catalog down = %d %v %s", i, r.status, r.header, r.body)
		}
	}
	b.proxy.Up()
	before := b.catalog.Requests()
	r := b.do(t, "POST", "/v1/orders", b.order(), key("k-down"))
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "1" {
		// With an hour left on the breaker, Retry-After says so.
		t.Fatalf("breaker open = %d Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	if got := b.catalog.Requests(); got != before {
		t.Fatalf("an open breaker let %d requests through to catalog", got-before)
	}
	if c := b.counts(t); c != [4]int{} {
		t.Fatalf("catalog outage wrote rows (orders, lines, outbox, keys) = %v", c)
	}
}

// TestSlowCatalogCostsOnlyTheTimeoutsThenAnswers503: a catalog that accepts connections and never answers
// costs at most the client's attempt timeouts, then 503, nothing written.
func TestSlowCatalogCostsOnlyTheTimeoutsThenAnswers503(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.proxy.Blackhole()
	r := b.do(t, "POST", "/v1/orders", b.order(), key("k-slow"))
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("slow catalog = %d %s", r.status, r.body)
	}
	if c := b.counts(t); c != [4]int{} {
		t.Fatalf("slow catalog wrote rows = %v", c)
	}
	b.proxy.Up()
	if r := b.do(t, "POST", "/v1/orders", b.order(), key("k-slow")); r.status != http.StatusCreated {
		t.Fatalf("same key after catalog recovered = %d %s", r.status, r.body)
	}
}

// pricerFunc is an ordersvc.Pricer.
type pricerFunc func(context.Context, catalogapi.BatchQuery) (catalogapi.ProductBatch, error)

func (f pricerFunc) Batch(ctx context.Context, q catalogapi.BatchQuery) (catalogapi.ProductBatch, error) {
	return f(ctx, q)
}

// TestPricingHoldsNoConnection: checkout asks catalog for prices before it
// takes a database connection, so checkouts waiting on a slow catalog do
// not exhaust the pool and the requests behind them reach the open
// breaker at once (the catalog-down drill). The pricer records how many
// of the pool's connections are taken while it runs; each test has its
// own database and pool. A retry of a stored key is still answered from
// the store when pricing fails (catalog down, the product archived).
func TestPricingHoldsNoConnection(t *testing.T) {
	t.Parallel()
	var held []int32
	var mu sync.Mutex
	var b *bundle
	b = setupPricer(t, func(next ordersvc.Pricer) ordersvc.Pricer {
		return pricerFunc(func(ctx context.Context, q catalogapi.BatchQuery) (catalogapi.ProductBatch, error) {
			mu.Lock()
			held = append(held, b.db.Pool.Stat().AcquiredConns())
			mu.Unlock()
			return next.Batch(ctx, q)
		})
	})
	first := b.do(t, "POST", "/v1/orders", b.order(), key("k-held"))
	if first.status != http.StatusCreated {
		t.Fatalf("POST = %d %s", first.status, first.body)
	}
	mu.Lock()
	if len(held) != 1 || held[0] != 0 {
		t.Fatalf("connections taken while pricing: %v, want [0]", held)
	}
	mu.Unlock()
	// Catalog down: the retry of the stored key replays, a new key is 503.
	b.proxy.Down()
	if r := b.do(t, "POST", "/v1/orders", b.order(), key("k-held")); r.status != http.StatusCreated ||
		r.header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(r.body, first.body) {
		t.Fatalf("retry with catalog down = %d %v %s", r.status, r.header, r.body)
	}
	if r := b.do(t, "POST", "/v1/orders", b.order(), key("k-new")); r.status != http.StatusServiceUnavailable {
		t.Fatalf("new key with catalog down = %d %s", r.status, r.body)
	}
	b.proxy.Up()
	// A product archived since: the retry still replays the order it made.
	b.catalog.Archive(t, b.a)
	if r := b.do(t, "POST", "/v1/orders", b.order(), key("k-held")); r.status != http.StatusCreated || !bytes.Equal(r.body, first.body) {
		t.Fatalf("retry after the product was archived = %d %s", r.status, r.body)
	}
	if c := b.counts(t); c != [4]int{1, 2, 1, 1} {
		t.Fatalf("rows (orders, lines, outbox, keys) = %v", c)
	}
}

// TestCheckoutBusyWhenNoConnectionIsFree: with every pool connection
// taken, a checkout waits CHECKOUT_CONN_WAIT, then answers 503 busy with
// Retry-After and writes nothing; the same key succeeds once one is free.
func TestCheckoutBusyWhenNoConnectionIsFree(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	b := setup(t, func(c *orderhttp.Config) { c.CheckoutConnWait, c.Registerer = 100*time.Millisecond, reg })
	var held []*pgxpool.Conn
	for range b.db.Pool.Config().MaxConns {
		c, err := b.db.Pool.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	r := b.do(t, "POST", "/v1/orders", b.order(), key("k-busy"))
	for _, c := range held {
		c.Release()
	}
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "1" || decode[*httpkit.Problem](t, r).Class() != "busy" {
		t.Fatalf("checkout with no connection free = %d %v %s", r.status, r.header, r.body)
	}
	if n := counterValue(t, reg, "orders_checkout_busy_total"); n != 1 {
		t.Fatalf("orders_checkout_busy_total = %g, want 1", n)
	}
	if c := b.counts(t); c != [4]int{} {
		t.Fatalf("a busy checkout wrote rows (orders, lines, outbox, keys) = %v", c)
	}
	if r := b.do(t, "POST", "/v1/orders", b.order(), key("k-busy")); r.status != http.StatusCreated {
		t.Fatalf("same key with connections free = %d %s", r.status, r.body)
	}
}

// counterValue is the value of the single counter named name in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}

func (b *bundle) place(t *testing.T, k string) ordersapi.Order {
	t.Helper()
	r := b.do(t, "POST", "/v1/orders", b.order(), key(k))
	if r.status != http.StatusCreated {
		t.Fatalf("POST = %d %s", r.status, r.body)
	}
	return decode[ordersapi.Order](t, r)
}

func TestCancelNeedsAKeyAndTheCurrentVersionAndReplays(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.place(t, "k-1")
	if r := b.do(t, "POST", "/v1/orders/"+o.ID+"/cancel", nil, nil); r.status != http.StatusBadRequest {
		t.Fatalf("cancel without key = %d", r.status)
	}
	if r := b.do(t, "POST", "/v1/orders/"+o.ID+"/cancel", nil, map[string]string{"Idempotency-Key": "c-0", "If-Match": `"7"`}); r.status != http.StatusPreconditionFailed {
		t.Fatalf("cancel with a stale If-Match = %d %s", r.status, r.body)
	}
	r := b.do(t, "POST", "/v1/orders/"+o.ID+"/cancel", map[string]string{"reason": "changed my mind"}, map[string]string{"Idempotency-Key": "c-1", "If-Match": `"1"`})
	if r.status != http.StatusOK {
		t.Fatalf("cancel = %d %s", r.status, r.body)
	}
	if got := decode[ordersapi.Order](t, r); got.Status != ordersapi.StatusCancelled || got.Version != 2 || r.header.Get("ETag") != `"2"` {
		t.Fatalf("cancelled: %+v %v", got, r.header)
	}
	if again := b.do(t, "POST", "/v1/orders/"+o.ID+"/cancel", map[string]string{"reason": "changed my mind"}, map[string]string{"Idempotency-Key": "c-1", "If-Match": `"1"`}); again.status != http.StatusOK ||
		again.header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(again.body, r.body) {
		t.Fatalf("replayed cancel = %d %s", again.status, again.body)
	}
	r = b.do(t, "POST", "/v1/orders/"+o.ID+"/cancel", nil, key("c-2"))
	if p := decode[*httpkit.Problem](t, r); r.status != http.StatusConflict || p.Class() != "illegal-transition" || !strings.Contains(p.Detail, "cancelled (version 2)") {
		t.Fatalf("cancel a cancelled order = %d %s", r.status, r.body)
	}
	var typs []string
	rows, err := b.db.Pool.Query(context.Background(), `SELECT event_type FROM outbox WHERE key = $1 ORDER BY id`, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		typs = append(typs, s)
	}
	if strings.Join(typs, ",") != "order.placed,order.cancelled" {
		t.Fatalf("events: %v", typs)
	}
	if r := b.do(t, "POST", "/v1/orders/0192f5d2-8c1e-7000-8000-000000000001/cancel", nil, key("c-3")); r.status != http.StatusNotFound {
		t.Fatalf("cancel unknown = %d", r.status)
	}
}

// TestConcurrentCancelsHaveOneWinnerAndOneEvent: two cancels of one order with different keys race;
// one wins, the other gets 409 with the current state, one event.
func TestConcurrentCancelsHaveOneWinnerAndOneEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for round := range 5 {
		o := b.place(t, fmt.Sprintf("k-%d", round))
		var wg sync.WaitGroup
		var codes [2]int
		for i := range 2 {
			wg.Go(func() {
				codes[i] = b.do(t, "POST", "/v1/orders/"+o.ID+"/cancel", nil, key(fmt.Sprintf("c-%d-%d", round, i))).status
			})
		}
		wg.Wait()
		if codes != [2]int{200, 409} && codes != [2]int{409, 200} {
			t.Fatalf("round %d: codes %v, want one 200 and one 409", round, codes)
		}
		var n int
		if err := b.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox WHERE key = $1 AND event_type = 'order.cancelled'`, o.ID).Scan(&n); err != nil || n != 1 {
			t.Fatalf("round %d: %d cancel events, %v", round, n, err)
		}
	}
}

func TestListByCustomer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var ids []string
	for i := range 5 {
		ids = append(ids, b.place(t, fmt.Sprintf("k-%d", i)).ID)
	}
	var got []string
	token := ""
	for page := 0; ; page++ {
		r := b.do(t, "GET", "/v1/orders?customer_id=cust-42&limit=2&page_token="+token, nil, nil)
		if r.status != http.StatusOK || r.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("page %d = %d %s", page, r.status, r.body)
		}
		l := decode[ordersapi.OrderList](t, r)
		for _, o := range l.Orders {
			got = append(got, o.ID)
		}
		if token = l.NextPageToken; token == "" {
			break
		}
	}
	if len(got) != 5 || got[0] != ids[4] || got[4] != ids[0] {
		t.Fatalf("pages gave %v, want newest first of %v", got, ids)
	}
	for _, q := range []string{"?limit=0", "?limit=101", "?page_token=zzz"} {
		if r := b.do(t, "GET", "/v1/orders"+q, nil, nil); r.status != http.StatusBadRequest {
			t.Errorf("GET /v1/orders%s = %d", q, r.status)
		}
	}
	// An operator names the customer; without one the list is refused.
	if r := b.do(t, "GET", "/v1/orders", nil, map[string]string{"Authorization": b.callers[authtest.Operator]}); r.status != http.StatusBadRequest {
		t.Errorf("operator without customer_id = %d", r.status)
	}
}

// TestOrderEventsShowTheOutbox: an order's events are its outbox rows,
// oldest first, with the trace id each carries; unpublished, they have no
// position; once the relay (here: an UPDATE as the relay makes it) records
// where each went, the answer says so. The relay's last error is shown to
// operators only.
func TestOrderEventsShowTheOutbox(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.place(t, "events-1")
	if r := b.do(t, "POST", "/v1/orders/"+o.ID+"/cancel", nil, key("events-cancel")); r.status != http.StatusOK {
		t.Fatalf("cancel = %d %s", r.status, r.body)
	}
	ctx := context.Background()
	if _, err := b.db.Pool.Exec(ctx, `UPDATE outbox SET headers = headers || '{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}',
		attempts = 2, last_error = 'nats: timeout' WHERE key = $1`, o.ID); err != nil {
		t.Fatal(err)
	}
	events := func(who string) ordersapi.OrderEventList {
		t.Helper()
		r := b.do(t, "GET", "/v1/orders/"+o.ID+"/events", nil, map[string]string{"Authorization": b.callers[who]})
		if r.status != http.StatusOK || r.header.Get("Cache-Control") == "" {
			t.Fatalf("events as %s = %d %v %s", who, r.status, r.header, r.body)
		}
		return decode[ordersapi.OrderEventList](t, r)
	}
	l := events(authtest.Owner)
	if len(l.Events) != 2 || l.Events[0].Type != ordersapi.EventOrderPlaced || l.Events[1].Type != ordersapi.EventOrderCancelled {
		t.Fatalf("events = %+v, want order.placed then order.cancelled", l.Events)
	}
	for _, e := range l.Events {
		if e.Stream != ordersapi.Stream || e.PublishedAt != nil || e.Partition != nil || e.Sequence != nil ||
			e.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || e.PublishAttempts != 2 || e.LastError != "" {
			t.Errorf("unpublished event as the owner: %+v", e)
		}
	}
	if _, err := b.db.Pool.Exec(ctx, `UPDATE outbox SET published_at = now(), published_partition = 5, published_sequence = 1234 WHERE key = $1`, o.ID); err != nil {
		t.Fatal(err)
	}
	l = events(authtest.Operator)
	if e := l.Events[0]; e.PublishedAt == nil || e.Partition == nil || *e.Partition != 5 || e.Sequence == nil || *e.Sequence != 1234 || e.LastError != "nats: timeout" {
		t.Errorf("published event as an operator: %+v", e)
	}
}
