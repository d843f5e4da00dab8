// Package producthttp is catalog's HTTP transport: go-kit endpoints for the
// public and admin APIs, caching headers for the CDN, and the one place
// where catalog's errors become statuses.
package producthttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-kit/kit/endpoint"
	kithttp "github.com/go-kit/kit/transport/http"
	"github.com/google/uuid"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/cache"
	"github.com/shopfloor/shopfloor/pkg/httpcache"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/catalog/internal/product"
	"github.com/shopfloor/shopfloor/services/catalog/internal/productsvc"
)

// Service is what the routes call: catalog's use cases
// (*productsvc.Service), declared here where they are used.
type Service interface {
	Get(ctx context.Context, id, locale, currency string) (catalogapi.Product, cache.Meta, error)
	List(ctx context.Context, category, afterID string, limit int, locale, currency string) (catalogapi.ProductList, error)
	Batch(ctx context.Context, ids []string, locale, currency string) (catalogapi.ProductBatch, error)
	BatchBySKU(ctx context.Context, skus []string, locale, currency string) (catalogapi.ProductBatch, error)
	AdminGet(ctx context.Context, id string) (product.Product, error)
	Create(ctx context.Context, p product.Product) (product.Product, error)
	Update(ctx context.Context, id string, ifMatch int64, change func(*product.Product)) (product.Product, error)
	// Cache is the product cache, for the operator's bypass switch.
	Cache() *cache.Cache[catalogapi.Product]
}

var _ Service = (*productsvc.Service)(nil)

// Config is what the routes need beside the use cases.
type Config struct {
	// Authz verifies bearer tokens: the admin API needs an operator,
	// products:batch a service or an operator (ADR 0022). Required.
	Authz *auth.Verifier
	// Log receives what the error encoder logs (500s). nil: discarded.
	Log *slog.Logger
	// Public is the Cache-Control of public product reads.
	Public httpcache.Policy
}

// representation is the schema version of the public JSON; it is part of
// every ETag, so changing the JSON shape changes every ETag.
const representation = "r1"

// Routes mounts catalog's API on mux. Who may call (ADR 0022):
//
//	GET /v1/products, /v1/products/{id}   anyone (public, cached by the CDN)
//	GET /v1/products:batch                a service (checkout pricing) or an operator
//	/v1/admin/...                         an operator (served on the admin listener only, ADR 0023)
//	GET /v1/openapi.yaml                  anyone: the API's contract (catalogapi.OpenAPI), documentation
//
// Routes panics when a required Config field is missing: a wiring
// mistake.
func Routes(mux *http.ServeMux, svc Service, cfg Config) {
	if cfg.Authz == nil {
		panic("producthttp.Routes: Config.Authz is required")
	}
	log := cfg.Log
	enc := kithttp.ServerErrorEncoder(errorEncoder(log))
	mux.Handle("GET /v1/openapi.yaml", httpkit.Document(httpkit.ContentTypeYAML, catalogapi.OpenAPI()))
	mux.Handle("GET /v1/products/{id}", httpkit.NewKitServer(getProduct(svc, cfg), decodeGet, httpkit.EncodeJSON, log, enc))
	mux.Handle("GET /v1/products", httpkit.NewKitServer(listProducts(svc, cfg), decodeList, httpkit.EncodeJSON, log, enc))
	// ?ids=a,b and/or ?skus=A,B (1–100 entries in all), &currency=, &locale=.
	// Uncached by design (prices at checkout), so not for anonymous callers.
	mux.Handle("GET /v1/products:batch", cfg.Authz.Handle(auth.AnyOf(auth.RoleService, auth.RoleOperator),
		httpkit.NewKitServer(batchProducts(svc), decodeBatch, httpkit.EncodeJSON, log, enc)))

	operator := auth.AnyOf(auth.RoleOperator)
	admin := func(e endpoint.Endpoint, dec kithttp.DecodeRequestFunc) http.Handler {
		return cfg.Authz.Handle(operator, httpkit.NewKitServer(e, dec, httpkit.EncodeJSON, log, enc))
	}
	mux.Handle("POST /v1/admin/products", admin(createProduct(svc), decodeCreate))
	mux.Handle("GET /v1/admin/products/{id}", admin(adminGet(svc), decodeID))
	mux.Handle("PUT /v1/admin/products/{id}", admin(updateProduct(svc), decodeUpdate))
	mux.Handle("POST /v1/admin/products/{id}/archive", admin(archiveProduct(svc), decodeIfMatchOnly))
	mux.Handle("PUT /v1/admin/products/{id}/prices/{currency}", admin(setPrice(svc), decodePrice))
	mux.Handle("PUT /v1/admin/cache/bypass", admin(setBypass(svc), decodeBypass))
}

// response carries a body with a status and headers (go-kit's StatusCoder
// and Headerer, which httpkit.EncodeJSON honours).
type response struct {
	body    any
	status  int
	headers http.Header
}

func (r response) StatusCode() int      { return r.status }
func (r response) Headers() http.Header { return r.headers }
func (r response) MarshalJSON() ([]byte, error) {
	return json.Marshal(r.body)
}

// --- public reads ---

type getRequest struct {
	id, locale, currency, ifNoneMatch string
}

func decodeGet(_ context.Context, r *http.Request) (any, error) {
	locale, currency, err := localeCurrency(r)
	if err != nil {
		return nil, err
	}
	return getRequest{id: r.PathValue("id"), locale: locale, currency: currency, ifNoneMatch: r.Header.Get("If-None-Match")}, nil
}

func localeCurrency(r *http.Request) (string, string, error) {
	q := r.URL.Query()
	locale, err := product.NegotiateLocale(q.Get("locale"), r.Header.Get("Accept-Language"))
	if err != nil {
		return "", "", httpkit.NewProblem(http.StatusBadRequest, "unsupported-locale", err.Error())
	}
	currency, err := product.ParseCurrency(q.Get("currency"))
	if err != nil {
		return "", "", httpkit.NewProblem(http.StatusBadRequest, "unsupported-currency", err.Error())
	}
	return locale, currency, nil
}

func getProduct(svc Service, cfg Config) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		r := req.(getRequest)
		p, _, err := svc.Get(ctx, r.id, r.locale, r.currency)
		if err != nil {
			return nil, err
		}
		etag := httpcache.ETag(representation, p.ID, strconv.FormatInt(p.Version, 10), r.locale, r.currency)
		h := http.Header{}
		httpcache.Public(h, cfg.Public, etag, []string{"product:" + p.ID, "category:" + p.Category}, "Accept-Language")
		if httpcache.Matches(r.ifNoneMatch, etag) {
			return response{status: http.StatusNotModified, headers: h}, nil
		}
		return response{body: p, status: http.StatusOK, headers: h}, nil
	}
}

type listRequest struct {
	category, after, locale, currency, ifNoneMatch string
	limit                                          int
}

func decodeList(_ context.Context, r *http.Request) (any, error) {
	locale, currency, err := localeCurrency(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	req := listRequest{category: q.Get("category"), after: q.Get("page_token"), locale: locale, currency: currency, limit: 20, ifNoneMatch: r.Header.Get("If-None-Match")}
	var fe []httpkit.FieldError
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			fe = append(fe, httpkit.FieldError{Field: "limit", Message: "must be 1–100"})
		}
		req.limit = n
	}
	if req.after != "" {
		if _, err := uuid.Parse(req.after); err != nil {
			fe = append(fe, httpkit.FieldError{Field: "page_token", Message: "is not a token this API returned"})
		}
	}
	if len(req.category) > 40 {
		fe = append(fe, httpkit.FieldError{Field: "category", Message: "at most 40 characters"})
	}
	if len(fe) > 0 {
		p := httpkit.NewProblem(http.StatusBadRequest, "invalid-query", "the query is not valid")
		p.Errors = fe
		return nil, p
	}
	return req, nil
}

func listProducts(svc Service, cfg Config) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		r := req.(listRequest)
		page, err := svc.List(ctx, r.category, r.after, r.limit, r.locale, r.currency)
		if err != nil {
			return nil, err
		}
		body, err := json.Marshal(page)
		if err != nil {
			return nil, err
		}
		keys := []string{"products"}
		if r.category != "" {
			keys = append(keys, "category:"+r.category)
		}
		for _, p := range page.Products {
			keys = append(keys, "product:"+p.ID)
		}
		etag := httpcache.ETag(representation, string(body))
		h := http.Header{}
		httpcache.Public(h, cfg.Public, etag, keys, "Accept-Language")
		if httpcache.Matches(r.ifNoneMatch, etag) {
			return response{status: http.StatusNotModified, headers: h}, nil
		}
		return response{body: page, status: http.StatusOK, headers: h}, nil
	}
}

type batchRequest struct {
	ids, skus        []string
	locale, currency string
}

// maxBatch is the most products one batch request may name.
const maxBatch = 100

// decodeBatch takes ids=, skus= or both, each a comma-separated list; 1–100
// entries in all.
func decodeBatch(_ context.Context, r *http.Request) (any, error) {
	locale, currency, err := localeCurrency(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	req := batchRequest{locale: locale, currency: currency}
	if !q.Has("ids") && !q.Has("skus") {
		return nil, httpkit.NewProblem(http.StatusBadRequest, "invalid-query",
			fmt.Sprintf("send ids (product ids), skus, or both, comma-separated: 1–%d entries in all", maxBatch))
	}
	if q.Has("ids") {
		req.ids, err = batchList(q.Get("ids"), "ids", "product ids", "is not a product id", func(id string) bool {
			_, err := uuid.Parse(id)
			return err == nil
		})
		if err != nil {
			return nil, err
		}
	}
	if q.Has("skus") {
		req.skus, err = batchList(q.Get("skus"), "skus", "skus", "is not a sku (3–40 upper-case letters, digits or '-')", product.ValidSKU)
		if err != nil {
			return nil, err
		}
	}
	if n := len(req.ids) + len(req.skus); n > maxBatch {
		return nil, httpkit.NewProblem(http.StatusBadRequest, "invalid-query",
			fmt.Sprintf("ids and skus name %d products together, at most %d", n, maxBatch))
	}
	return req, nil
}

// batchList splits raw, a comma-separated list of 1–maxBatch entries of
// the query parameter field, and checks each entry with valid.
func batchList(raw, field, what, invalid string, valid func(string) bool) ([]string, error) {
	list := strings.Split(raw, ",")
	if raw == "" || len(list) > maxBatch {
		return nil, httpkit.NewProblem(http.StatusBadRequest, "invalid-query",
			fmt.Sprintf("%s must list 1–%d %s, comma-separated", field, maxBatch, what))
	}
	for _, v := range list {
		if !valid(v) {
			p := httpkit.NewProblem(http.StatusBadRequest, "invalid-query", field+" must be "+what)
			p.Errors = []httpkit.FieldError{{Field: field, Message: fmt.Sprintf("%q %s", v, invalid)}}
			return nil, p
		}
	}
	return list, nil
}

// batchProducts serves orders' price lookups: always current, never
// stored by a shared cache (it is read through Redis like single reads).
func batchProducts(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		r := req.(batchRequest)
		// Products named by id first, then by sku; Missing likewise.
		b := catalogapi.ProductBatch{Products: []catalogapi.Product{}}
		if r.ids != nil {
			byID, err := svc.Batch(ctx, r.ids, r.locale, r.currency)
			if err != nil {
				return nil, err
			}
			b = byID
		}
		if r.skus != nil {
			bySKU, err := svc.BatchBySKU(ctx, r.skus, r.locale, r.currency)
			if err != nil {
				return nil, err
			}
			b.Products, b.Missing = append(b.Products, bySKU.Products...), append(b.Missing, bySKU.Missing...)
		}
		h := http.Header{}
		httpcache.Private(h)
		return response{body: b, status: http.StatusOK, headers: h}, nil
	}
}

// --- admin ---

func toAdmin(p product.Product) catalogapi.AdminProduct {
	return catalogapi.AdminProduct{ID: p.ID, SKU: p.SKU, Category: p.Category, Images: p.Images, Status: p.Status,
		Version: p.Version, Translations: p.Translations, Prices: p.Prices}
}

func fromAdmin(a catalogapi.AdminProduct) product.Product {
	return product.Product{SKU: a.SKU, Category: a.Category, Images: a.Images, Status: a.Status,
		Translations: a.Translations, Prices: a.Prices}
}

// versionETag is the admin API's validator: the product version.
func versionETag(v int64) string { return `"v` + strconv.FormatInt(v, 10) + `"` }

func adminResponse(p product.Product, status int) response {
	h := http.Header{}
	httpcache.Private(h)
	h.Set("ETag", versionETag(p.Version))
	if status == http.StatusCreated {
		h.Set("Location", "/v1/admin/products/"+p.ID)
	}
	return response{body: toAdmin(p), status: status, headers: h}
}

func decodeCreate(_ context.Context, r *http.Request) (any, error) {
	var a catalogapi.AdminProduct
	if err := httpkit.DecodeJSON(r, &a, 64<<10); err != nil {
		return nil, err
	}
	if a.ID != "" || a.Version != 0 {
		return nil, httpkit.NewProblem(http.StatusBadRequest, "invalid-field", "id and version are assigned by the server")
	}
	return a, nil
}

func createProduct(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		p, err := svc.Create(ctx, fromAdmin(req.(catalogapi.AdminProduct)))
		if err != nil {
			return nil, err
		}
		return adminResponse(p, http.StatusCreated), nil
	}
}

func decodeID(_ context.Context, r *http.Request) (any, error) { return r.PathValue("id"), nil }

func adminGet(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		p, err := svc.AdminGet(ctx, req.(string))
		if err != nil {
			return nil, err
		}
		return adminResponse(p, http.StatusOK), nil
	}
}

// ifMatch parses If-Match: "v3" (or v3, or 3). Missing → 428.
func ifMatch(r *http.Request) (int64, error) {
	h := strings.TrimSpace(r.Header.Get("If-Match"))
	if h == "" {
		return 0, httpkit.NewProblem(http.StatusPreconditionRequired, "precondition-required",
			"send If-Match with the ETag of the version you are changing (GET /v1/admin/products/{id})")
	}
	v, err := strconv.ParseInt(strings.TrimPrefix(strings.Trim(h, `"`), "v"), 10, 64)
	if err != nil || v < 1 {
		return 0, httpkit.NewProblem(http.StatusBadRequest, "invalid-header", "If-Match must be a product ETag like \"v3\"")
	}
	return v, nil
}

type updateRequest struct {
	id      string
	version int64
	body    catalogapi.AdminProduct
}

func decodeUpdate(_ context.Context, r *http.Request) (any, error) {
	v, err := ifMatch(r)
	if err != nil {
		return nil, err
	}
	var a catalogapi.AdminProduct
	if err := httpkit.DecodeJSON(r, &a, 64<<10); err != nil {
		return nil, err
	}
	return updateRequest{id: r.PathValue("id"), version: v, body: a}, nil
}

func updateProduct(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		r := req.(updateRequest)
		next := fromAdmin(r.body)
		p, err := svc.Update(ctx, r.id, r.version, func(p *product.Product) {
			status := p.Status
			*p = next
			if p.Status == "" {
				p.Status = status
			}
		})
		if err != nil {
			return nil, err
		}
		return adminResponse(p, http.StatusOK), nil
	}
}

func decodeIfMatchOnly(_ context.Context, r *http.Request) (any, error) {
	v, err := ifMatch(r)
	if err != nil {
		return nil, err
	}
	return updateRequest{id: r.PathValue("id"), version: v}, nil
}

func archiveProduct(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		r := req.(updateRequest)
		p, err := svc.Update(ctx, r.id, r.version, func(p *product.Product) { p.Status = product.StatusArchived })
		if err != nil {
			return nil, err
		}
		return adminResponse(p, http.StatusOK), nil
	}
}

type priceRequest struct {
	updateRequest
	currency string
	amount   int64
}

func decodePrice(_ context.Context, r *http.Request) (any, error) {
	v, err := ifMatch(r)
	if err != nil {
		return nil, err
	}
	var body struct {
		AmountMinor int64 `json:"amount_minor"`
	}
	if err := httpkit.DecodeJSON(r, &body, 1<<10); err != nil {
		return nil, err
	}
	return priceRequest{updateRequest: updateRequest{id: r.PathValue("id"), version: v}, currency: r.PathValue("currency"), amount: body.AmountMinor}, nil
}

func setPrice(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		r := req.(priceRequest)
		p, err := svc.Update(ctx, r.id, r.version, func(p *product.Product) {
			prices := make(map[string]int64, len(p.Prices)+1)
			for k, v := range p.Prices {
				prices[k] = v
			}
			prices[r.currency] = r.amount
			p.Prices = prices
		})
		if err != nil {
			return nil, err
		}
		return adminResponse(p, http.StatusOK), nil
	}
}

func decodeBypass(_ context.Context, r *http.Request) (any, error) {
	var body struct {
		Enabled *bool `json:"enabled"`
	}
	if err := httpkit.DecodeJSON(r, &body, 1<<10); err != nil {
		return nil, err
	}
	if body.Enabled == nil {
		return nil, httpkit.NewProblem(http.StatusBadRequest, "invalid-field", `send {"enabled": true|false}`)
	}
	return *body.Enabled, nil
}

func setBypass(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		svc.Cache().SetBypass(req.(bool))
		h := http.Header{}
		httpcache.Private(h)
		return response{body: map[string]bool{"enabled": req.(bool)}, status: http.StatusOK, headers: h}, nil
	}
}

// errorEncoder is the one place catalog's errors become statuses.
func errorEncoder(log *slog.Logger) kithttp.ErrorEncoder {
	base := httpkit.ErrorEncoder(log)
	return func(ctx context.Context, err error, w http.ResponseWriter) {
		var (
			verr *product.ValidationError
			prob *httpkit.Problem
		)
		httpcache.NoStore(w.Header())
		switch {
		case errors.As(err, &prob):
		case errors.Is(err, product.ErrNotFound):
			httpcache.NotFound(w.Header())
			err = httpkit.NewProblem(http.StatusNotFound, "not-found", "no such product")
		case errors.Is(err, product.ErrNoPrice):
			err = httpkit.NewProblem(http.StatusNotFound, "no-price", err.Error())
		case errors.Is(err, product.ErrVersionMismatch):
			err = httpkit.NewProblem(http.StatusPreconditionFailed, "version-mismatch", "the product changed since you read it; GET it again and retry with its ETag")
		case errors.Is(err, product.ErrSKUTaken):
			err = httpkit.NewProblem(http.StatusConflict, "sku-taken", err.Error())
		case errors.As(err, &verr):
			p := httpkit.NewProblem(http.StatusUnprocessableEntity, "invalid-product", "the product is not valid")
			for _, f := range verr.Fields {
				p.Errors = append(p.Errors, httpkit.FieldError{Field: f.Field, Message: f.Message})
			}
			err = p
		case errors.Is(err, cache.ErrOverloaded):
			p := httpkit.NewProblem(http.StatusServiceUnavailable, "overloaded", "too many products are being loaded; retry shortly")
			p.RetryAfter = time.Second
			err = p
		}
		base(ctx, err, w)
	}
}
