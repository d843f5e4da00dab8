// Package paymenthttp is payments' HTTP transport: the payment API
// (go-kit endpoints, bearer tokens and who may call per route, ADR 0022;
// Idempotency-Key on the POST), the job queue's admin endpoints behind the
// admin token, and the one place where payments' errors become statuses.
package paymenthttp

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/go-kit/kit/endpoint"
	kithttp "github.com/go-kit/kit/transport/http"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/pkg/audit"
	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/httpcache"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/idempotency"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/services/payments/internal/payment"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentsvc"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// StoredHeaders are the response fields an idempotent replay repeats.
func StoredHeaders() []string { return []string{"Content-Type", "Location", "Cache-Control"} }

// Service is what the routes call: payments' use cases
// (*paymentsvc.Service), declared here where they are used.
type Service interface {
	// Pool is the database the idempotency store's transactions run on.
	Pool() *pgxpool.Pool
	Create(ctx context.Context, tx pgx.Tx, key string, in paymentsvc.CreateInput) (payment.Payment, error)
	Get(ctx context.Context, id, customerID string) (payment.Payment, error)
	GetByOrder(ctx context.Context, orderID, customerID string) (payment.Payment, error)
	Calls(ctx context.Context, paymentID string) ([]paymentsapi.ProviderCall, error)
	OpenRefunds(ctx context.Context, limit int) ([]paymentsapi.OpenRefund, error)
	AbandonRefund(ctx context.Context, refundID, actor, reason string) (paymentsapi.OpenRefund, error)
	Audit(ctx context.Context, actionPrefix string, limit int) ([]audit.Entry, error)
}

var _ Service = (*paymentsvc.Service)(nil)

// Config is what the routes need beside the use cases.
type Config struct {
	// Authz verifies bearer tokens (ADR 0022). Required.
	Authz *auth.Verifier
	// Log receives what the error encoder logs (500s). nil: discarded.
	Log *slog.Logger
	// Idempotency stores POST /v1/payments' Idempotency-Key answers. Required.
	Idempotency *idempotency.Store
	// Jobs is the job queue whose operator tools /v1/admin/queues/ serves
	// (jobqueue.Client.AdminRoutes). Required.
	Jobs *jobqueue.Client
}

// Routes mounts payments' API on mux. Who may call (ADR 0022):
//
//	POST /v1/payments             operators only: order payments are created
//	                              from order.placed by the ORDERS consumer; this
//	                              is an operator's tool
//	GET  /v1/payments/{id}        the order's customer, or an operator
//	GET  /v1/payments?order_id=   the order's customer, an operator, or a
//	                              service client (orders' repair of stuck
//	                              orders; identity grants only orders a
//	                              token for audience payments)
//
// Another customer's payment, and a payment whose customer is not known
// (an operator's, before its order.placed arrived), answers exactly like a
// missing one: 404 not-found, so payment and order ids cannot be probed.
// Service clients are 403 elsewhere, callers without a valid token 401
// (pkg/auth).
// /v1/admin/ (the job queue's tools, open refunds and abandoning one, the
// audit log; mounted on the admin listener only, ADR 0023) is for
// operators. GET /v1/openapi.yaml is for anyone: the API's contract
// (paymentsapi.OpenAPI), documentation.
// Routes panics when a required Config field is missing: a wiring
// mistake.
func Routes(mux *http.ServeMux, svc Service, cfg Config) {
	if cfg.Authz == nil || cfg.Idempotency == nil || cfg.Jobs == nil {
		panic("paymenthttp.Routes: Config.Authz, Config.Idempotency and Config.Jobs are required")
	}
	log, store := cfg.Log, cfg.Idempotency
	enc := kithttp.ServerErrorEncoder(errorEncoder(log))
	replay := func(_ context.Context, w http.ResponseWriter, resp any) error {
		idempotency.WriteResponse(w, resp.(idempotency.Response))
		return nil
	}
	operator := auth.AnyOf(auth.RoleOperator)
	ownerOrOperator := auth.AnyOf(auth.RoleCustomer, auth.RoleOperator)
	mux.Handle("POST /v1/payments", cfg.Authz.Handle(operator,
		httpkit.NewKitServer(createPayment(svc, store), decodeCreate(store), replay, log, enc)))
	mux.Handle("GET /v1/payments/{id}", cfg.Authz.Handle(ownerOrOperator,
		httpkit.NewKitServer(getPayment(svc), decodeGet, encodePrivate, log, enc)))
	mux.Handle("GET /v1/payments", cfg.Authz.Handle(auth.AnyOf(auth.RoleCustomer, auth.RoleOperator, auth.RoleService),
		httpkit.NewKitServer(getByOrder(svc), decodeByOrder, encodePrivate, log, enc)))
	mux.Handle("/v1/admin/", cfg.Authz.Handle(operator, adminMux(svc, cfg.Jobs, log, enc)))
	mux.Handle("GET /v1/openapi.yaml", httpkit.Document(httpkit.ContentTypeYAML, paymentsapi.OpenAPI()))
}

// adminMux is the admin API Routes mounts at /v1/admin/ behind the
// operator check: the job queue's tools and adminRoutes.
func adminMux(svc Service, jobs *jobqueue.Client, log *slog.Logger, enc kithttp.ServerOption) *http.ServeMux {
	admin := http.NewServeMux()
	jobs.AdminRoutes(admin, "/v1/admin/queues")
	adminRoutes(admin, svc, log, enc)
	return admin
}

// paymentKey is the idempotency key of the payment attempt an API request
// creates (unique in payments, next to the ORDERS consumer's
// order:<order id>): "api:sub:<subject>:<Idempotency-Key>". The subject is
// query-escaped, so that it holds no ':' and two principals' keys cannot
// run together ("a:b" with key "c" against "a" with key "b:c").
func paymentKey(p auth.Principal, key string) string {
	return "api:sub:" + url.QueryEscape(p.Subject) + ":" + key
}

func encodePrivate(ctx context.Context, w http.ResponseWriter, resp any) error {
	httpcache.NoStore(w.Header())
	return httpkit.EncodeJSON(ctx, w, resp)
}

type createRequest struct {
	idem idempotency.Request
	// key is the payment attempt's idempotency key (paymentKey).
	key string
	in  paymentsapi.CreatePayment
}

func decodeCreate(store *idempotency.Store) kithttp.DecodeRequestFunc {
	return func(ctx context.Context, r *http.Request) (any, error) {
		p, err := auth.Caller(ctx)
		if err != nil {
			return nil, err
		}
		idem, err := store.ReadRequest(r, p.IdempotencyScope())
		if err != nil {
			return nil, err
		}
		var in paymentsapi.CreatePayment
		if err := httpkit.DecodeJSON(r, &in, 16<<10); err != nil {
			return nil, err
		}
		if err := payment.Validate(in); err != nil {
			return nil, err
		}
		return createRequest{idem: idem, key: paymentKey(p, idem.Key), in: in}, nil
	}
}

// createPayment writes the attempt and its charge job with the key, and
// answers 202: the charge happens in the worker; the Location is the
// status URL. The attempt has no customer (the body cannot name one: an
// operator cannot vouch for whose order it is); order.placed of the order
// records it, and until then only operators read the payment.
func createPayment(svc Service, store *idempotency.Store) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		r := req.(createRequest)
		resp, _, err := store.Do(ctx, svc.Pool(), r.idem, func(ctx context.Context, tx pgx.Tx) (idempotency.Response, error) {
			p, err := svc.Create(ctx, tx, r.key, paymentsvc.CreateInput{CreatePayment: r.in})
			if err != nil {
				return idempotency.Response{}, err
			}
			return idempotency.Encode(ctx, httpkit.EncodeJSON, accepted{p.API()})
		})
		return resp, err
	}
}

// accepted is a 202 with the status URL.
type accepted struct{ paymentsapi.Payment }

func (accepted) StatusCode() int { return http.StatusAccepted }

func (a accepted) Headers() http.Header {
	h := http.Header{}
	h.Set("Location", "/v1/payments/"+a.ID)
	httpcache.NoStore(h)
	return h
}

// readRequest is a read of one payment (by its id or its order's id) by
// a caller who may see owner's payments ("" for an operator: all).
type readRequest struct{ id, owner string }

func decodeGet(ctx context.Context, r *http.Request) (any, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	return readRequest{id: r.PathValue("id"), owner: p.Owner()}, nil
}

func getPayment(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		r := req.(readRequest)
		p, err := svc.Get(ctx, r.id, r.owner)
		if err != nil {
			return nil, err
		}
		calls, err := svc.Calls(ctx, p.ID)
		if err != nil {
			return nil, err
		}
		return p.APIWithCalls(calls), nil
	}
}

func decodeByOrder(ctx context.Context, r *http.Request) (any, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	id := r.URL.Query().Get("order_id")
	if id == "" {
		pr := httpkit.NewProblem(http.StatusBadRequest, "invalid-query", "order_id is required")
		pr.Errors = []httpkit.FieldError{{Field: "order_id", Message: "is required"}}
		return nil, pr
	}
	owner := p.Owner()
	if p.Has(auth.RoleService) && !p.Has(auth.RoleCustomer) {
		owner = "" // a service reads any order's payment (no personal data in it)
	}
	return readRequest{id: id, owner: owner}, nil
}

func getByOrder(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		r := req.(readRequest)
		p, err := svc.GetByOrder(ctx, r.id, r.owner)
		if err != nil {
			return nil, err
		}
		calls, err := svc.Calls(ctx, p.ID)
		if err != nil {
			return nil, err
		}
		return p.APIWithCalls(calls), nil
	}
}

func errorEncoder(log *slog.Logger) kithttp.ErrorEncoder {
	base := httpkit.ErrorEncoder(log)
	return func(ctx context.Context, err error, w http.ResponseWriter) {
		var verr *payment.ValidationError
		httpcache.NoStore(w.Header())
		admin := adminProblem(err)
		switch {
		case errors.As(err, &verr):
			p := httpkit.NewProblem(http.StatusUnprocessableEntity, "invalid-payment", "the payment is not valid; see errors")
			for _, f := range verr.Fields {
				p.Errors = append(p.Errors, httpkit.FieldError{Field: f.Field, Pointer: "#/" + f.Field, Message: f.Message})
			}
			err = p
		case errors.Is(err, payment.ErrExists):
			err = httpkit.NewProblem(http.StatusConflict, "payment-exists",
				"this order already has a payment; GET /v1/payments?order_id= shows it")
		case errors.Is(err, payment.ErrNotFound):
			err = httpkit.NewProblem(http.StatusNotFound, "not-found", "no such payment")
		case admin != nil:
			err = admin
		}
		base(ctx, err, w)
	}
}
