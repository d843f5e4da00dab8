// Package indexhttp is search's HTTP transport: go-kit endpoints for the
// product and order searches, the freshness headers every answer carries,
// and the one place where search's errors become statuses.
//
// Contract: answers come from projections that are derived and may lag;
// each one says how fresh it is (searchapi.HeaderLastApplied,
// searchapi.HeaderLagSeconds and the body's freshness), and none is
// cached. Bad input is a 400 problem that names every bad parameter and
// changes nothing.
package indexhttp

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-kit/kit/endpoint"
	kithttp "github.com/go-kit/kit/transport/http"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/httpcache"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/services/search/internal/index"
	"github.com/shopfloor/shopfloor/services/search/internal/indexsvc"
	"github.com/shopfloor/shopfloor/services/search/searchapi"
)

// Service is what the routes call: search's queries (*indexsvc.Searcher),
// declared here where they are used.
type Service interface {
	Products(ctx context.Context, q index.ProductQuery) (searchapi.ProductResults, error)
	Orders(ctx context.Context, q index.OrderQuery) (searchapi.OrderResults, error)
}

var _ Service = (*indexsvc.Searcher)(nil)

// Config is what the routes need beside the queries.
type Config struct {
	// Authz verifies bearer tokens (ADR 0022). Required.
	Authz *auth.Verifier
	// Log receives what the error encoder logs (500s). nil: discarded.
	Log *slog.Logger
}

// Routes mounts search's API on mux. Who may call (ADR 0022):
//
//	GET /v1/search/products?q=&category=&locale=&page_token=&limit=   anyone (public catalog data)
//	GET /v1/search/orders?customer_id=&status=&q=&page_token=&limit=  an operator (every order), or a
//	                                                                  customer (their own orders only)
//	GET /v1/openapi.yaml                                              anyone: the API's contract
//	                                                                  (searchapi.OpenAPI), documentation
//
// A customer's order search is scoped to the token's subject: a
// customer_id naming someone else is 403.
//
// Bad parameters are answered 400 application/problem+json, class
// "invalid-query", with every bad parameter named in errors[].field.
// Answers are never cached (Cache-Control: no-store): they are only as
// fresh as their headers say. Search has no admin routes (its operator
// tools are commands: replay, dlq). Routes panics when a required Config
// field is missing: a wiring mistake.
func Routes(mux *http.ServeMux, svc Service, cfg Config) {
	if cfg.Authz == nil {
		panic("indexhttp.Routes: Config.Authz is required")
	}
	authz, log := cfg.Authz, cfg.Log
	enc := kithttp.ServerErrorEncoder(errorEncoder(log))
	mux.Handle("GET /v1/openapi.yaml", httpkit.Document(httpkit.ContentTypeYAML, searchapi.OpenAPI()))
	mux.Handle("GET /v1/search/products", httpkit.NewKitServer(searchProducts(svc), decodeProducts, encode, log, enc))
	mux.Handle("GET /v1/search/orders", authz.Handle(auth.AnyOf(auth.RoleCustomer, auth.RoleOperator),
		httpkit.NewKitServer(searchOrders(svc), decodeOrders, encode, log, enc)))
}

func decodeProducts(_ context.Context, r *http.Request) (any, error) {
	return index.ParseProductQuery(r.URL.Query())
}

func decodeOrders(ctx context.Context, r *http.Request) (any, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	if owner := p.Owner(); owner != "" {
		if c := q.Get("customer_id"); c != "" && c != owner {
			return nil, httpkit.NewProblem(http.StatusForbidden, "customer-mismatch", "customers can search only their own orders; leave customer_id out")
		}
		q.Set("customer_id", owner)
	}
	return index.ParseOrderQuery(q)
}

func searchProducts(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		res, err := svc.Products(ctx, req.(index.ProductQuery))
		if err != nil {
			return nil, err
		}
		return fresh{res, res.Freshness}, nil
	}
}

func searchOrders(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		res, err := svc.Orders(ctx, req.(index.OrderQuery))
		if err != nil {
			return nil, err
		}
		return fresh{res, res.Freshness}, nil
	}
}

// fresh is an answer with its projection's freshness in headers.
type fresh struct {
	body      any
	freshness searchapi.Freshness
}

// Headers are the freshness headers (searchapi.HeaderLastApplied,
// searchapi.HeaderLagSeconds) and Cache-Control: no-store.
func (f fresh) Headers() http.Header {
	h := http.Header{}
	httpcache.NoStore(h)
	if t := f.freshness.LastAppliedAt; t != nil {
		h.Set(searchapi.HeaderLastApplied, t.UTC().Format(time.RFC3339Nano))
	}
	if s := f.freshness.LagSeconds; s != nil {
		h.Set(searchapi.HeaderLagSeconds, strconv.FormatFloat(*s, 'f', 3, 64))
	}
	return h
}

func encode(ctx context.Context, w http.ResponseWriter, resp any) error {
	f := resp.(fresh)
	for k, vs := range f.Headers() {
		w.Header()[k] = vs
	}
	return httpkit.EncodeJSON(ctx, w, f.body)
}

// errorEncoder maps search's errors to problems; everything else goes
// to httpkit's encoder (500, logged).
func errorEncoder(log *slog.Logger) kithttp.ErrorEncoder {
	fallback := httpkit.ErrorEncoder(log)
	return func(ctx context.Context, err error, w http.ResponseWriter) {
		var iq *index.InvalidQueryError
		if errors.As(err, &iq) {
			names := make([]string, len(iq.Fields))
			p := httpkit.NewProblem(http.StatusBadRequest, "invalid-query", "")
			for i, f := range iq.Fields {
				names[i] = f.Field
				p.Errors = append(p.Errors, httpkit.FieldError{Field: f.Field, Message: f.Message})
			}
			p.Detail = "invalid query parameter: " + strings.Join(names, ", ") + "; see errors for what each needs"
			httpcache.NoStore(w.Header())
			httpkit.WriteProblem(w, p)
			return
		}
		fallback(ctx, err, w)
	}
}
