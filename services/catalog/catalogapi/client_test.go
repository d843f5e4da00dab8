package catalogapi_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/ratelimit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/cache"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/catalog/internal/product"
	"github.com/shopfloor/shopfloor/services/catalog/internal/producthttp"
	"github.com/shopfloor/shopfloor/services/catalog/internal/productsvc"
	"github.com/shopfloor/shopfloor/services/catalog/migrations"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// fault is an answer the upstream gives instead of catalog's.
type fault struct {
	status     int
	retryAfter time.Duration // sent as Retry-After (whole seconds) when > 0
}

// upstream wraps catalog's real handler: it counts the requests that reach
// catalog and can answer with scripted faults or hold requests until the
// client gives up.
type upstream struct {
	next     http.Handler
	requests atomic.Int64
	slow     atomic.Bool // hold every request until its context ends

	mu     sync.Mutex
	script []fault // answered first, one per request
	always *fault  // then answered to every request, when set
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.requests.Add(1)
	if u.slow.Load() {
		<-r.Context().Done()
		return
	}
	if f, ok := u.fault(); ok {
		p := httpkit.NewProblem(f.status, "injected", fmt.Sprintf("injected %d", f.status))
		p.RetryAfter = f.retryAfter
		httpkit.WriteProblem(w, p)
		return
	}
	u.next.ServeHTTP(w, r)
}

func (u *upstream) fault() (fault, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.script) > 0 {
		f := u.script[0]
		u.script = u.script[1:]
		return f, true
	}
	if u.always != nil {
		return *u.always, true
	}
	return fault{}, false
}

// answer scripts the next answers.
func (u *upstream) answer(fs ...fault) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.script = append(u.script, fs...)
}

// answerAlways makes every later request get f (nil: catalog answers again).
func (u *upstream) answerAlways(f *fault) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.always = f
}

type bundle struct {
	svc   *productsvc.Service
	up    *upstream
	srv   *httptest.Server
	proxy *testinfra.Proxy
	base  string // catalog's address through the proxy
	// token is a service client's Authorization value (products:batch
	// needs one).
	token string
}

// setup runs the real catalog API (its own database and Redis prefix)
// behind the counting upstream, behind a proxy the test can cut.
func setup(t *testing.T) *bundle {
	t.Helper()
	db := testinfra.Postgres(t, migrations.FS)
	r := testinfra.Redis(t)
	log := slog.New(slog.DiscardHandler)
	svc, err := productsvc.New(db.Pool, func(load cache.Loader[catalogapi.Product]) (*cache.Cache[catalogapi.Product], error) {
		return cache.New(r.Client, load, cache.Config{Namespace: r.Prefix, Class: "product"}, log)
	}, outbox.New(catalogapi.Stream), log, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	iss := authtest.NewIssuer(t)
	authz, err := auth.NewVerifier(iss.Config(catalogapi.Audience), catalogapi.Audience, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mux := httpkit.NewMux(httpkit.NewHealth(), nil)
	producthttp.Routes(mux, svc, producthttp.Config{Authz: authz, Log: log})
	up := &upstream{next: mux}
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	proxy := testinfra.NewProxy(t, srv.Listener.Addr().String())
	return &bundle{svc: svc, up: up, srv: srv, proxy: proxy, base: "http://" + proxy.Addr(),
		token: "Bearer " + iss.Service(t, "orders", catalogapi.Audience)}
}

func (b *bundle) create(t *testing.T, sku string, prices map[string]int64) product.Product {
	t.Helper()
	p, err := b.svc.Create(context.Background(), product.Product{
		SKU: sku, Category: "lamps", Images: []string{"https://img.example/lamp.jpg"},
		Translations: map[string]catalogapi.ProductText{
			"en-US": {Name: "Brass lamp", Description: "Warm light."},
			"de-DE": {Name: "Messinglampe", Description: "Warmes Licht."},
		},
		Prices: prices,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (b *bundle) archive(t *testing.T, p product.Product) {
	t.Helper()
	if _, err := b.svc.Update(context.Background(), p.ID, p.Version, func(p *product.Product) { p.Status = product.StatusArchived }); err != nil {
		t.Fatal(err)
	}
}

// probe is a client under test with its own metrics registry and a count
// of the attempts its transport sent.
type probe struct {
	*catalogapi.Client
	reg  *prometheus.Registry
	sent atomic.Int64
}

// roundTripper counts the requests the client's transport sends.
type roundTripper struct {
	next  http.RoundTripper
	sent  *atomic.Int64
	token string
}

func (rt roundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	rt.sent.Add(1)
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", rt.token)
	return rt.next.RoundTrip(r)
}

// client returns a client of b's catalog; cfg.BaseURL defaults to the
// proxy, the backoff to a short one.
func (b *bundle) client(t *testing.T, cfg catalogapi.ClientConfig) *probe {
	t.Helper()
	p := &probe{reg: prometheus.NewRegistry()}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	if cfg.BaseURL == "" {
		cfg.BaseURL = b.base
	}
	if cfg.Backoff == (backoff.Policy{}) {
		cfg.Backoff = backoff.Policy{Initial: time.Millisecond, Max: 20 * time.Millisecond}
	}
	cfg.HTTPClient = &http.Client{Transport: roundTripper{next: tr, sent: &p.sent, token: b.token}}
	cfg.Registerer = p.reg
	c, err := catalogapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.Client = c
	return p
}

// metric returns the value of the client's metric name with the given
// outcome label ("" for none).
func (p *probe) metric(t *testing.T, name, outcome string) float64 {
	t.Helper()
	mfs, err := p.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := outcome == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					match = true
				}
			}
			if !match {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s{outcome=%q}", name, outcome)
	return 0
}

func (p *probe) outcome(t *testing.T, o string) float64 {
	t.Helper()
	return p.metric(t, "catalog_client_requests_total", o)
}

func (p *probe) breakerState(t *testing.T) float64 {
	t.Helper()
	return p.metric(t, "catalog_client_breaker_state", "")
}

var eur = map[string]int64{"EUR": 4999, "USD": 5499}

func skusOf(b catalogapi.ProductBatch) []string {
	var out []string
	for _, p := range b.Products {
		out = append(out, p.SKU)
	}
	return out
}

func TestClientBatchByIDsAndSKUs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a, bb := b.create(t, "LAMP-A", eur), b.create(t, "LAMP-B", eur)
	gone := b.create(t, "LAMP-GONE", eur)
	b.archive(t, gone)
	b.create(t, "LAMP-GBP", map[string]int64{"GBP": 3999})
	unknown := "01234567-89ab-7def-8123-456789abcdef"
	c := b.client(t, catalogapi.ClientConfig{})

	tests := []struct {
		name        string
		q           catalogapi.BatchQuery
		wantSKUs    []string
		wantMissing []string
		wantPrice   catalogapi.Price
		wantName    string
	}{
		{"by ids", catalogapi.BatchQuery{IDs: []string{a.ID, unknown, bb.ID, gone.ID}, Currency: "USD"},
			[]string{"LAMP-A", "LAMP-B"}, []string{unknown, gone.ID}, catalogapi.Price{Currency: "USD", AmountMinor: 5499}, "Brass lamp"},
		{"by skus", catalogapi.BatchQuery{SKUs: []string{"LAMP-B", "NOPE-1", "LAMP-GONE", "LAMP-A", "LAMP-GBP"}, Currency: "EUR", Locale: "de-DE"},
			[]string{"LAMP-B", "LAMP-A"}, []string{"NOPE-1", "LAMP-GONE", "LAMP-GBP"}, catalogapi.Price{Currency: "EUR", AmountMinor: 4999}, "Messinglampe"},
		{"by ids and skus in one request: the ids' first", catalogapi.BatchQuery{IDs: []string{bb.ID, unknown}, SKUs: []string{"NOPE-1", "LAMP-A"}, Currency: "EUR"},
			[]string{"LAMP-B", "LAMP-A"}, []string{unknown, "NOPE-1"}, catalogapi.Price{Currency: "EUR", AmountMinor: 4999}, "Brass lamp"},
	}
	for _, tt := range tests {
		got, err := c.Batch(context.Background(), tt.q)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !slices.Equal(skusOf(got), tt.wantSKUs) || !slices.Equal(got.Missing, tt.wantMissing) {
			t.Fatalf("%s: products %v missing %v, want %v missing %v", tt.name, skusOf(got), got.Missing, tt.wantSKUs, tt.wantMissing)
		}
		for _, p := range got.Products {
			if p.Price != tt.wantPrice || p.Name != tt.wantName {
				t.Fatalf("%s: %s priced %+v named %q, want %+v %q", tt.name, p.SKU, p.Price, p.Name, tt.wantPrice, tt.wantName)
			}
		}
	}
	if n := b.up.requests.Load(); n != 3 {
		t.Fatalf("catalog saw %d requests, want 3", n)
	}
	if got := c.outcome(t, "ok"); got != 3 {
		t.Fatalf("ok outcomes = %v, want 3", got)
	}
}

// TestClientProblemsAreNotRetried: a 4xx answer is the caller's mistake:
// one request, a *ProblemError, no breaker failure (each client opens its
// breaker after a single failure, and the second call still reaches
// catalog).
func TestClientProblemsAreNotRetried(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.create(t, "LAMP-A", eur)
	tests := []struct {
		name     string
		baseURL  string
		q        catalogapi.BatchQuery
		inject   *fault
		status   int
		wantType string
	}{
		{name: "unknown currency", q: catalogapi.BatchQuery{IDs: []string{a.ID}, Currency: "JPY"}, status: 400, wantType: "unsupported-currency"},
		{name: "more than 100 ids and skus", q: catalogapi.BatchQuery{IDs: slices.Repeat([]string{a.ID}, 60), SKUs: slices.Repeat([]string{"LAMP-A"}, 41)},
			status: 400, wantType: "invalid-query"},
		{name: "neither ids nor skus", q: catalogapi.BatchQuery{}, status: 400, wantType: "invalid-query"},
		{name: "malformed sku", q: catalogapi.BatchQuery{SKUs: []string{"lamp a"}}, status: 400, wantType: "invalid-query"},
		{name: "no such route", baseURL: b.base + "/nope", q: catalogapi.BatchQuery{IDs: []string{a.ID}}, status: 404, wantType: "not-found"},
		{name: "422", q: catalogapi.BatchQuery{IDs: []string{a.ID}}, inject: &fault{status: 422}, status: 422, wantType: "injected"},
	}
	for _, tt := range tests {
		c := b.client(t, catalogapi.ClientConfig{BaseURL: tt.baseURL, BreakerFailures: 1})
		b.up.answerAlways(tt.inject)
		for call := range 2 {
			before := b.up.requests.Load()
			_, err := c.Batch(context.Background(), tt.q)
			var pe *catalogapi.ProblemError
			if !errors.As(err, &pe) || errors.Is(err, catalogapi.ErrUnavailable) {
				t.Fatalf("%s: call %d: err = %v, want a *ProblemError that is not ErrUnavailable", tt.name, call, err)
			}
			if pe.Status != tt.status || pe.Type != httpkit.ProblemBase+tt.wantType || pe.Title == "" {
				t.Fatalf("%s: problem %+v, want %d %s", tt.name, pe, tt.status, tt.wantType)
			}
			if n := b.up.requests.Load() - before; n != 1 {
				t.Fatalf("%s: call %d reached catalog %d times, want once", tt.name, call, n)
			}
		}
		if st := c.breakerState(t); st != 0 {
			t.Fatalf("%s: breaker state %v after 4xx answers, want closed", tt.name, st)
		}
		if got := c.outcome(t, "problem"); got != 2 {
			t.Fatalf("%s: problem outcomes = %v, want 2", tt.name, got)
		}
	}
	b.up.answerAlways(nil)
	if pe := (&catalogapi.ProblemError{Status: 400, Title: "Bad Request", Detail: "x"}); pe.Error() != "catalog answered 400 Bad Request: x" {
		t.Fatalf("Error() = %q", pe.Error())
	}
}

// TestClientBreakerOpensWhileCatalogIsDown: connection failures open the
// breaker; then calls fail without sending anything; after the open
// duration one probe finds catalog back and closes it.
func TestClientBreakerOpensWhileCatalogIsDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.create(t, "LAMP-A", eur)
	c := b.client(t, catalogapi.ClientConfig{Attempts: 1, BreakerFailures: 3, BreakerOpenFor: 500 * time.Millisecond})
	q := catalogapi.BatchQuery{IDs: []string{a.ID}}
	if _, err := c.Batch(context.Background(), q); err != nil {
		t.Fatal(err)
	}

	b.proxy.Down()
	for i := range 3 {
		_, err := c.Batch(context.Background(), q)
		var pe *catalogapi.ProblemError
		if !errors.Is(err, catalogapi.ErrUnavailable) || errors.As(err, &pe) || errors.Is(err, gobreaker.ErrOpenState) {
			t.Fatalf("call %d with catalog down: %v, want ErrUnavailable from a connection error", i, err)
		}
		if catalogapi.RetryAfter(err) != time.Second {
			t.Fatalf("RetryAfter = %s, want 1s", catalogapi.RetryAfter(err))
		}
	}
	if st := c.breakerState(t); st != 2 {
		t.Fatalf("breaker state %v after 3 failures, want 2 (open)", st)
	}
	sent := c.sent.Load()
	_, err := c.Batch(context.Background(), q)
	if !errors.Is(err, catalogapi.ErrUnavailable) || !errors.Is(err, gobreaker.ErrOpenState) {
		t.Fatalf("call with the breaker open: %v, want ErrUnavailable from the open breaker", err)
	}
	if n := c.sent.Load() - sent; n != 0 {
		t.Fatalf("the open breaker let %d requests out", n)
	}
	if ra := catalogapi.RetryAfter(err); ra != time.Second {
		t.Fatalf("RetryAfter = %s, want 1s (at most 500ms left, rounded up)", ra)
	}
	if got := c.outcome(t, "breaker_open"); got != 1 {
		t.Fatalf("breaker_open outcomes = %v, want 1", got)
	}
	if got := c.outcome(t, "unavailable"); got != 3 {
		t.Fatalf("unavailable outcomes = %v, want 3", got)
	}

	b.proxy.Up()
	before := b.up.requests.Load()
	testinfra.Eventually(t, 10*time.Second, func() error {
		_, err := c.Batch(context.Background(), q)
		return err
	})
	if st := c.breakerState(t); st != 0 {
		t.Fatalf("breaker state %v after recovery, want 0 (closed)", st)
	}
	if b.up.requests.Load() == before {
		t.Fatal("recovered without reaching catalog")
	}
}

// TestClientServerErrorsOpenTheBreaker: 5xx answers count as failures; a
// 500 is not retried; retries stop when the breaker opens.
func TestClientServerErrorsOpenTheBreaker(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.create(t, "LAMP-A", eur)
	q := catalogapi.BatchQuery{IDs: []string{a.ID}}

	b.up.answerAlways(&fault{status: 500})
	c := b.client(t, catalogapi.ClientConfig{BreakerFailures: 2, BreakerOpenFor: time.Hour})
	for i := range 2 {
		before := b.up.requests.Load()
		_, err := c.Batch(context.Background(), q)
		var pe *catalogapi.ProblemError
		if !errors.Is(err, catalogapi.ErrUnavailable) || !errors.As(err, &pe) || pe.Status != 500 {
			t.Fatalf("call %d: %v, want ErrUnavailable wrapping the 500", i, err)
		}
		if n := b.up.requests.Load() - before; n != 1 {
			t.Fatalf("a 500 reached catalog %d times, want once (not retried)", n)
		}
	}
	before := b.up.requests.Load()
	_, err := c.Batch(context.Background(), q)
	if !errors.Is(err, catalogapi.ErrUnavailable) || !errors.Is(err, gobreaker.ErrOpenState) {
		t.Fatalf("after two 500s: %v, want the open breaker", err)
	}
	if n := b.up.requests.Load() - before; n != 0 {
		t.Fatalf("the open breaker let %d requests reach catalog", n)
	}
	if ra := catalogapi.RetryAfter(err); ra <= time.Minute || ra > time.Hour || ra%time.Second != 0 {
		t.Fatalf("RetryAfter = %s, want the rest of the hour the breaker stays open, in whole seconds", ra)
	}

	// 503s are retried, until the breaker opens mid-call.
	b.up.answerAlways(&fault{status: 503})
	c2 := b.client(t, catalogapi.ClientConfig{Attempts: 3, BreakerFailures: 2, BreakerOpenFor: time.Hour})
	before = b.up.requests.Load()
	_, err = c2.Batch(context.Background(), q)
	if !errors.Is(err, catalogapi.ErrUnavailable) || !errors.Is(err, gobreaker.ErrOpenState) {
		t.Fatalf("503s: %v, want the breaker to stop the third attempt", err)
	}
	if n := b.up.requests.Load() - before; n != 2 {
		t.Fatalf("503s reached catalog %d times, want 2 (the breaker refused the third attempt)", n)
	}
	if st := c2.breakerState(t); st != 2 {
		t.Fatalf("breaker state %v, want 2 (open)", st)
	}
}

// TestClientSlowCatalog: attempts that get no answer within Timeout are
// retried, then the call is ErrUnavailable; the caller's deadline bounds
// the attempts.
func TestClientSlowCatalog(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.create(t, "LAMP-A", eur)
	q := catalogapi.BatchQuery{IDs: []string{a.ID}}
	b.up.slow.Store(true)

	c := b.client(t, catalogapi.ClientConfig{Timeout: 100 * time.Millisecond, Attempts: 3})
	_, err := c.Batch(context.Background(), q)
	if !errors.Is(err, catalogapi.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow catalog: %v, want ErrUnavailable from a timeout", err)
	}
	if n := c.sent.Load(); n != 3 {
		t.Fatalf("sent %d attempts, want 3", n)
	}
	testinfra.Eventually(t, 10*time.Second, func() error {
		if n := b.up.requests.Load(); n != 3 {
			return fmt.Errorf("catalog saw %d requests, want 3", n)
		}
		return nil
	})
	if st := c.breakerState(t); st != 0 {
		t.Fatalf("breaker state %v after 3 of 5 failures, want closed", st)
	}
	if got := c.outcome(t, "unavailable"); got != 1 {
		t.Fatalf("unavailable outcomes = %v, want 1", got)
	}

	// The caller's deadline cuts the attempts short: each attempt lasts
	// its full 100ms (catalog never answers), so 250ms hold at most 3 of
	// the 10 allowed.
	c2 := b.client(t, catalogapi.ClientConfig{Timeout: 100 * time.Millisecond, Attempts: 10, BreakerFailures: 100})
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	_, err = c2.Batch(ctx, q)
	if !errors.Is(err, catalogapi.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("caller deadline: %v, want ErrUnavailable from the deadline", err)
	}
	if n := c2.sent.Load(); n < 1 || n > 3 {
		t.Fatalf("sent %d attempts within a 250ms deadline, want 1–3", n)
	}
	b.up.slow.Store(false)

	// A canceled caller gets its cancellation back, not ErrUnavailable.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := c2.Batch(ctx, q); !errors.Is(err, context.Canceled) || errors.Is(err, catalogapi.ErrUnavailable) {
		t.Fatalf("canceled caller: %v, want context.Canceled", err)
	}
	if got := c2.outcome(t, "canceled"); got != 1 {
		t.Fatalf("canceled outcomes = %v, want 1", got)
	}
}

// TestClientRetriesTransientAnswers: 429 and 502/503/504 are retried
// (Retry-After honoured, capped by the backoff's Max: 20ms here).
func TestClientRetriesTransientAnswers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.create(t, "LAMP-A", eur)
	q := catalogapi.BatchQuery{SKUs: []string{"LAMP-A"}}
	c := b.client(t, catalogapi.ClientConfig{})
	tests := []struct {
		name   string
		faults []fault
	}{
		{"503 with Retry-After", []fault{{status: 503, retryAfter: time.Second}}},
		{"429 with Retry-After", []fault{{status: 429, retryAfter: time.Second}}},
		{"429 without Retry-After", []fault{{status: 429}}},
		{"502", []fault{{status: 502}}},
		{"504 twice", []fault{{status: 504}, {status: 504}}},
	}
	for _, tt := range tests {
		b.up.answer(tt.faults...)
		before := b.up.requests.Load()
		got, err := c.Batch(context.Background(), q)
		if err != nil || len(got.Products) != 1 || got.Products[0].ID != a.ID {
			t.Fatalf("%s: %+v %v, want the product after a retry", tt.name, got, err)
		}
		if n, want := b.up.requests.Load()-before, int64(len(tt.faults)+1); n != want {
			t.Fatalf("%s: catalog saw %d requests, want %d", tt.name, n, want)
		}
	}
	if got := c.outcome(t, "ok"); got != float64(len(tests)) {
		t.Fatalf("ok outcomes = %v, want %d", got, len(tests))
	}

	// Every attempt answered 503: ErrUnavailable wrapping the last answer.
	b.up.answer(fault{status: 503}, fault{status: 503}, fault{status: 503})
	before := b.up.requests.Load()
	_, err := c.Batch(context.Background(), q)
	var pe *catalogapi.ProblemError
	if !errors.Is(err, catalogapi.ErrUnavailable) || !errors.As(err, &pe) || pe.Status != 503 || catalogapi.RetryAfter(err) != time.Second {
		t.Fatalf("three 503s: %v, want ErrUnavailable wrapping the 503, RetryAfter 1s", err)
	}
	if n := b.up.requests.Load() - before; n != 3 {
		t.Fatalf("three 503s: catalog saw %d requests, want 3", n)
	}

	// A Retry-After that the caller's deadline would cut short is not
	// waited for: the call returns at once, before the deadline.
	slowRetry := b.client(t, catalogapi.ClientConfig{Backoff: backoff.Policy{Initial: time.Millisecond, Max: 2 * time.Minute}})
	b.up.answer(fault{status: 429, retryAfter: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before = b.up.requests.Load()
	_, err = slowRetry.Batch(ctx, q)
	if !errors.Is(err, catalogapi.ErrUnavailable) || !errors.As(err, &pe) || pe.Status != 429 {
		t.Fatalf("429 with Retry-After past the deadline: %v, want ErrUnavailable wrapping the 429", err)
	}
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the client waited for the deadline (%v) instead of giving up", err)
	}
	if n := b.up.requests.Load() - before; n != 1 {
		t.Fatalf("catalog saw %d requests, want 1", n)
	}
}

// TestClientRateLimit: calls over MaxRequestsPerSecond fail at once
// without reaching catalog.
func TestClientRateLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.create(t, "LAMP-A", eur)
	q := catalogapi.BatchQuery{IDs: []string{a.ID}}
	c := b.client(t, catalogapi.ClientConfig{MaxRequestsPerSecond: 0.001}) // one token, then one per 1000s
	if _, err := c.Batch(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	before := b.up.requests.Load()
	_, err := c.Batch(context.Background(), q)
	if !errors.Is(err, catalogapi.ErrUnavailable) || !errors.Is(err, ratelimit.ErrLimited) {
		t.Fatalf("over the limit: %v, want ErrUnavailable from the rate limit", err)
	}
	if n := b.up.requests.Load() - before; n != 0 {
		t.Fatalf("a limited call reached catalog %d times", n)
	}
	if got := c.outcome(t, "rate_limited"); got != 1 {
		t.Fatalf("rate_limited outcomes = %v, want 1", got)
	}
	if st := c.breakerState(t); st != 0 {
		t.Fatalf("breaker state %v, want closed", st)
	}
}

func TestNewClientValidatesConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  catalogapi.ClientConfig
	}{
		{"no BaseURL", catalogapi.ClientConfig{}},
		{"not a URL", catalogapi.ClientConfig{BaseURL: "http://[::1"}},
		{"relative", catalogapi.ClientConfig{BaseURL: "catalog:8080"}},
		{"other scheme", catalogapi.ClientConfig{BaseURL: "ftp://catalog"}},
		{"query", catalogapi.ClientConfig{BaseURL: "http://catalog?x=1"}},
		{"negative attempts", catalogapi.ClientConfig{BaseURL: "http://catalog", Attempts: -1}},
		{"negative timeout", catalogapi.ClientConfig{BaseURL: "http://catalog", Timeout: -time.Second}},
		{"backoff initial above max", catalogapi.ClientConfig{BaseURL: "http://catalog", Backoff: backoff.Policy{Initial: time.Second, Max: time.Millisecond}}},
		{"negative rate", catalogapi.ClientConfig{BaseURL: "http://catalog", MaxRequestsPerSecond: -1}},
		{"negative breaker failures", catalogapi.ClientConfig{BaseURL: "http://catalog", BreakerFailures: -1}},
	}
	for _, tt := range tests {
		if _, err := catalogapi.NewClient(tt.cfg); err == nil {
			t.Errorf("%s: NewClient accepted %+v", tt.name, tt.cfg)
		}
	}
	reg := prometheus.NewRegistry()
	if _, err := catalogapi.NewClient(catalogapi.ClientConfig{BaseURL: "https://catalog.internal/api", Registerer: reg, Name: "orders",
		Backoff: backoff.Policy{Initial: 10 * time.Millisecond}}); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	if _, err := catalogapi.NewClient(catalogapi.ClientConfig{BaseURL: "https://catalog.internal/api", Registerer: reg, Name: "orders"}); err == nil {
		t.Fatal("a second client with the same name registered its metrics twice")
	}
	if catalogapi.RetryAfter(nil) != 0 {
		t.Fatal("RetryAfter(nil) != 0")
	}
}
