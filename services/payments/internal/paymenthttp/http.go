// Package paymenthttp is payments' HTTP transport: the payment API
// (go-kit endpoints, Idempotency-Key on the POST), the job queue's admin
// endpoints behind the admin token, and the one place where payments'
// errors become statuses.
package paymenthttp

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-kit/kit/endpoint"
	kithttp "github.com/go-kit/kit/transport/http"
	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/pkg/httpcache"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/idempotency"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/services/payments/internal/payment"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentsvc"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// ClientHeader carries the client identity that scopes idempotency keys
// (set by the gateway from authentication; ADR 0011).
const ClientHeader = "X-Client-Id"

// Config of the transport.
type Config struct {
	// AdminToken guards /v1/admin (the job queue's DLQ tools).
	AdminToken string
}

// StoredHeaders are the response fields an idempotent replay repeats.
func StoredHeaders() []string { return []string{"Content-Type", "Location", "Cache-Control"} }

// Routes mounts payments' API on mux.
func Routes(mux *http.ServeMux, svc *paymentsvc.Service, store *idempotency.Store, jobs *jobqueue.Client, cfg Config, log *slog.Logger) {
	enc := kithttp.ServerErrorEncoder(errorEncoder(log))
	replay := func(_ context.Context, w http.ResponseWriter, resp any) error {
		idempotency.WriteResponse(w, resp.(idempotency.Response))
		return nil
	}
	mux.Handle("POST /v1/payments", httpkit.NewKitServer(createPayment(svc, store), decodeCreate(store), replay, log, enc))
	mux.Handle("GET /v1/payments/{id}", httpkit.NewKitServer(getPayment(svc), decodeGet, encodePrivate, log, enc))
	mux.Handle("GET /v1/payments", httpkit.NewKitServer(getByOrder(svc), decodeByOrder, encodePrivate, log, enc))
	admin := http.NewServeMux()
	jobs.AdminRoutes(admin, "/v1/admin/queues")
	mux.Handle("/v1/admin/", httpkit.RequireBearer("payments-admin", cfg.AdminToken, admin))
}

func scope(r *http.Request) string {
	if c := strings.TrimSpace(r.Header.Get(ClientHeader)); c != "" && len(c) <= 128 {
		return "client:" + c
	}
	return "anonymous"
}

func encodePrivate(ctx context.Context, w http.ResponseWriter, resp any) error {
	httpcache.NoStore(w.Header())
	return httpkit.EncodeJSON(ctx, w, resp)
}

type createRequest struct {
	idem idempotency.Request
	in   paymentsapi.CreatePayment
}

func decodeCreate(store *idempotency.Store) kithttp.DecodeRequestFunc {
	return func(_ context.Context, r *http.Request) (any, error) {
		idem, err := store.ReadRequest(r, scope(r))
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
		return createRequest{idem: idem, in: in}, nil
	}
}

// createPayment writes the attempt and its charge job with the key, and
// answers 202: the charge happens in the worker; the Location is the
// status URL.
func createPayment(svc *paymentsvc.Service, store *idempotency.Store) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		r := req.(createRequest)
		resp, _, err := store.Do(ctx, svc.Pool(), r.idem, func(ctx context.Context, tx pgx.Tx) (idempotency.Response, error) {
			p, err := svc.Create(ctx, tx, "api:"+r.idem.Scope+":"+r.idem.Key, r.in)
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

func decodeGet(_ context.Context, r *http.Request) (any, error) { return r.PathValue("id"), nil }

func getPayment(svc *paymentsvc.Service) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		p, err := svc.Get(ctx, req.(string))
		if err != nil {
			return nil, err
		}
		return p.API(), nil
	}
}

func decodeByOrder(_ context.Context, r *http.Request) (any, error) {
	id := r.URL.Query().Get("order_id")
	if id == "" {
		p := httpkit.NewProblem(http.StatusBadRequest, "invalid-query", "order_id is required")
		p.Errors = []httpkit.FieldError{{Field: "order_id", Message: "is required"}}
		return nil, p
	}
	return id, nil
}

func getByOrder(svc *paymentsvc.Service) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		p, err := svc.GetByOrder(ctx, req.(string))
		if err != nil {
			return nil, err
		}
		return p.API(), nil
	}
}

func errorEncoder(log *slog.Logger) kithttp.ErrorEncoder {
	base := httpkit.ErrorEncoder(log)
	return func(ctx context.Context, err error, w http.ResponseWriter) {
		var verr *payment.ValidationError
		httpcache.NoStore(w.Header())
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
		}
		base(ctx, err, w)
	}
}
