package idempotency_test

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/idempotency"
)

// orderCreated is a route's response: 201 with a Location.
type orderCreated struct {
	ID string `json:"id"`
}

func (orderCreated) StatusCode() int { return http.StatusCreated }

func (o orderCreated) Headers() http.Header {
	return http.Header{"Location": []string{"/v1/orders/" + o.ID}}
}

// customerID is the scope: the authenticated client, set by the service's
// authentication middleware (a header stands in for it here).
func customerID(r *http.Request) string { return r.Header.Get("X-Customer-Id") }

// A go-kit route: ReadRequest in the decoder, Do in the endpoint (the
// business work in Do's transaction), WriteResponse in the encoder.
func ExampleStore_Do() {
	var (
		pool   *pgxpool.Pool // the service's database, with idempotency.Schema migrated
		reg    = prometheus.NewRegistry()
		logger = slog.Default()
	)
	store, err := idempotency.New(idempotency.Config{Registerer: reg, Logger: logger})
	if err != nil {
		return
	}

	type createOrder struct {
		idem  idempotency.Request
		Lines []string `json:"lines"`
	}
	decode := func(_ context.Context, r *http.Request) (any, error) {
		idem, err := store.ReadRequest(r, customerID(r)) // 400 without a key
		if err != nil {
			return nil, err
		}
		var in createOrder
		if err := httpkit.DecodeJSON(r, &in, 64<<10); err != nil {
			return nil, err // a validation problem: nothing is stored
		}
		in.idem = idem
		return in, nil
	}
	endpoint := func(ctx context.Context, request any) (any, error) {
		in := request.(createOrder)
		resp, _, err := store.Do(ctx, pool, in.idem, func(ctx context.Context, tx pgx.Tx) (idempotency.Response, error) {
			id := uuid.NewString()
			// The order and its outbox event, in the transaction that stores the key.
			if _, err := tx.Exec(ctx, `INSERT INTO orders (id, lines) VALUES ($1, $2)`, id, in.Lines); err != nil {
				return idempotency.Response{}, err // rolled back: the client may retry with the key
			}
			return idempotency.Encode(ctx, httpkit.EncodeJSON, orderCreated{ID: id})
		})
		return resp, err // 409, 422 are problems ErrorEncoder writes
	}
	encode := func(_ context.Context, w http.ResponseWriter, resp any) error {
		idempotency.WriteResponse(w, resp.(idempotency.Response))
		return nil
	}

	mux := http.NewServeMux()
	mux.Handle("POST /v1/orders", httpkit.NewKitServer(endpoint, decode, encode, logger))
}

// A plain net/http route: the handler finds the transaction in its
// request's context, and answers as usual; a status of 400 or more rolls
// back and is not stored.
func ExampleStore_Handler() {
	var pool *pgxpool.Pool // the service's database, with idempotency.Schema migrated
	store, err := idempotency.New(idempotency.Config{Retention: 24 * time.Hour})
	if err != nil {
		return
	}
	createOrder := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx, _ := idempotency.TxFromContext(r.Context())
		id := uuid.NewString()
		if _, err := tx.Exec(r.Context(), `INSERT INTO orders (id) VALUES ($1)`, id); err != nil {
			httpkit.ErrorEncoder(nil)(r.Context(), err, w)
			return
		}
		_ = httpkit.EncodeJSON(r.Context(), w, orderCreated{ID: id})
	})

	mux := http.NewServeMux()
	mux.Handle("POST /v1/orders", store.Handler(pool, customerID, createOrder))

	// In the worker role, now and then:
	_, _ = store.Prune(context.Background(), pool, 0)
}
