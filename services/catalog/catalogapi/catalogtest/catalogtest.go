// Package catalogtest runs the real catalog, in process, for other
// services' tests: its HTTP API on an httptest server, over its own
// PostgreSQL database and Redis prefix from pkg/testinfra. Not a fake: the
// handlers, the cache and the store are catalog's own, so a test that
// passes against it passes against the deployed service.
//
// Other services may import it (it sits under catalogapi, the package
// through which services import catalog); only tests should.
package catalogtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
	"github.com/shopfloor/shopfloor/pkg/cache"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/catalog/internal/producthttp"
	"github.com/shopfloor/shopfloor/services/catalog/internal/productsvc"
	"github.com/shopfloor/shopfloor/services/catalog/migrations"
)

// Catalog is a running catalog.
type Catalog struct {
	// URL is the base URL of the API (what CATALOG_URL would be).
	URL string
	// Server is the httptest server; Close it to take catalog down.
	Server *httptest.Server
	// DB is catalog's database.
	DB *testinfra.Database
	// Issuer is the identity provider catalog trusts (audience "catalog").
	Issuer *authtest.Issuer

	operator string

	requests atomic.Int64
}

// Start runs a catalog until the test ends, trusting an issuer of its own.
func Start(tb testing.TB) *Catalog {
	tb.Helper()
	return StartWith(tb, nil)
}

// StartWith runs a catalog that trusts iss (nil: a new issuer): pass the
// issuer a test's service gets its client-credentials tokens from.
func StartWith(tb testing.TB, iss *authtest.Issuer) *Catalog {
	tb.Helper()
	if iss == nil {
		iss = authtest.NewIssuer(tb)
	}
	db := testinfra.Postgres(tb, migrations.FS)
	r := testinfra.Redis(tb)
	log := slog.New(slog.DiscardHandler)
	svc, err := productsvc.New(db.Pool, func(load cache.Loader[catalogapi.Product]) (*cache.Cache[catalogapi.Product], error) {
		return cache.New(r.Client, load, cache.Config{Namespace: r.Prefix, Class: "product"}, log)
	}, outbox.New(catalogapi.Stream), log, time.Now)
	if err != nil {
		tb.Fatal(err)
	}
	authz, err := auth.NewVerifier(iss.Config(catalogapi.Audience), catalogapi.Audience, auth.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	c := &Catalog{DB: db, Issuer: iss, operator: "Bearer " + iss.Operator(tb, catalogapi.Audience)}
	mux := httpkit.NewMux(httpkit.NewHealth(), http.NotFoundHandler())
	producthttp.Routes(mux, svc, producthttp.Config{Authz: authz, Log: log})
	counted := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		c.requests.Add(1)
		mux.ServeHTTP(w, req)
	})
	c.Server = httptest.NewServer(httpkit.Chain(counted, httpkit.LimitBody(httpkit.DefaultMaxBodyBytes)))
	c.URL = c.Server.URL
	tb.Cleanup(c.Server.Close)
	return c
}

// ServiceTransport returns a RoundTripper that sends a service client's
// token for catalog with every request (what orders' client-credentials
// transport does in production), for a catalogapi.Client in a test.
func (c *Catalog) ServiceTransport(tb testing.TB) http.RoundTripper {
	tb.Helper()
	return bearer{tok: "Bearer " + c.Issuer.Service(tb, "orders", catalogapi.Audience), base: http.DefaultTransport}
}

type bearer struct {
	tok  string
	base http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", b.tok)
	return b.base.RoundTrip(r)
}

// Requests counts the requests catalog received (admin calls included).
func (c *Catalog) Requests() int64 { return c.requests.Load() }

// Product describes a product to create: an active product with an en-US
// name and the given prices (minor units per currency; default EUR 1000).
type Product struct {
	SKU      string
	Name     string
	Category string
	Prices   map[string]int64
}

// Add creates p through the admin API and returns it as catalog stored it.
func (c *Catalog) Add(tb testing.TB, p Product) catalogapi.AdminProduct {
	tb.Helper()
	if p.Name == "" {
		p.Name = "Product " + p.SKU
	}
	if p.Category == "" {
		p.Category = "test"
	}
	if p.Prices == nil {
		p.Prices = map[string]int64{"EUR": 1000}
	}
	var out catalogapi.AdminProduct
	c.admin(tb, http.MethodPost, "/v1/admin/products", "", catalogapi.AdminProduct{
		SKU: p.SKU, Category: p.Category, Images: []string{}, Status: "active",
		Translations: map[string]catalogapi.ProductText{"en-US": {Name: p.Name, Description: "A product for tests."}},
		Prices:       p.Prices,
	}, http.StatusCreated, &out)
	return out
}

// Archive archives product p (at its current version) and returns it.
func (c *Catalog) Archive(tb testing.TB, p catalogapi.AdminProduct) catalogapi.AdminProduct {
	tb.Helper()
	var out catalogapi.AdminProduct
	c.admin(tb, http.MethodPost, "/v1/admin/products/"+p.ID+"/archive", ifMatch(p.Version), nil, http.StatusOK, &out)
	return out
}

// SetPrice changes p's price in currency and returns the product.
func (c *Catalog) SetPrice(tb testing.TB, p catalogapi.AdminProduct, currency string, amountMinor int64) catalogapi.AdminProduct {
	tb.Helper()
	var out catalogapi.AdminProduct
	c.admin(tb, http.MethodPut, "/v1/admin/products/"+p.ID+"/prices/"+currency, ifMatch(p.Version),
		map[string]int64{"amount_minor": amountMinor}, http.StatusOK, &out)
	return out
}

func ifMatch(version int64) string { return strconv.Quote("v" + strconv.FormatInt(version, 10)) }

func (c *Catalog) admin(tb testing.TB, method, path, ifMatch string, body any, want int, out any) {
	tb.Helper()
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.URL+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", c.operator)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	resp, err := c.Server.Client().Do(req)
	if err != nil {
		tb.Fatalf("catalogtest: %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		tb.Fatalf("catalogtest: %s %s = %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		tb.Fatalf("catalogtest: %s %s: %v", method, path, fmt.Errorf("decode %s: %w", b, err))
	}
}
