// Package orderhttp is orders' HTTP transport: go-kit endpoints for
// checkout, cancel and reads, the Idempotency-Key handling of the POSTs
// (pkg/idempotency), and the one place where orders' errors become
// statuses.
package orderhttp

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-kit/kit/endpoint"
	kithttp "github.com/go-kit/kit/transport/http"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/httpcache"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/idempotency"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/orders/internal/order"
	"github.com/shopfloor/shopfloor/services/orders/internal/ordersvc"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

// Limits of the list endpoint.
const (
	defaultPageSize = 20
	maxPageSize     = 100
	maxBodyBytes    = 64 << 10 // a 50-line order is a few KiB
)

// Service is what the routes call: orders' use cases (*ordersvc.Service),
// declared here where they are used.
type Service interface {
	// Pool is the database the idempotency store's transactions run on.
	Pool() *pgxpool.Pool
	Price(ctx context.Context, in ordersapi.CreateOrder) ([]order.Line, error)
	Place(ctx context.Context, tx pgx.Tx, in ordersapi.CreateOrder, lines []order.Line) (order.Order, error)
	Cancel(ctx context.Context, tx pgx.Tx, owner, id string, ifVersion int64, reason string) (order.Order, error)
	Get(ctx context.Context, id string) (order.Order, error)
	Events(ctx context.Context, id string) ([]outbox.Record, error)
	List(ctx context.Context, customerID, pageToken string, limit int) ([]order.Order, string, error)
}

var _ Service = (*ordersvc.Service)(nil)

// Config is what the routes need beside the use cases.
type Config struct {
	// Authz verifies bearer tokens (ADR 0022). Required.
	Authz *auth.Verifier
	// Log receives what the error encoder logs (500s). nil: discarded.
	Log *slog.Logger
	// Idempotency stores the POSTs' Idempotency-Key answers. Required.
	Idempotency *idempotency.Store
	// CheckoutShedder sheds checkouts (POST /v1/orders) with the guard it
	// returns (overload.Shedder.Except), which runs after the caller is
	// authenticated and before the body is read: a request it refuses
	// changes nothing. The retry of a checkout whose Idempotency-Key is
	// already stored is admitted (a replay is one read, and shedding it
	// would turn an accepted order into an error for the client). Reads
	// and cancels are never shed. nil: no shedding.
	CheckoutShedder func(admit func(*http.Request) bool) func(http.Handler) http.Handler
	// CheckoutLimit is a per-customer rate limit
	// (ratelimit.Limiter.Middleware keyed by ratelimit.ByPrincipal) in
	// front of POST /v1/orders only: after authentication, before
	// shedding and before the request is read. A retry with a stored
	// Idempotency-Key takes a token too; refused, it is replayed once the
	// client comes back after Retry-After. nil: no per-customer limit.
	CheckoutLimit func(http.Handler) http.Handler
	// CheckoutConnWait bounds how long a checkout, once priced, waits for
	// one of the pool's connections: past it the checkout is answered 503
	// "busy" with Retry-After (1s), writes nothing, and
	// orders_checkout_busy_total counts it. The in-flight limit
	// (httpkit.LimitInFlight) bounds how many requests are admitted, not
	// how long they queue for the pool: when each transaction gets slower
	// (the latency drill adds 200ms to every round trip) the admitted
	// requests would otherwise wait behind each other until the clients
	// time out and retry, a timeout storm. 0: waits as long as the
	// request's context allows.
	CheckoutConnWait time.Duration
	// Registerer receives orders_checkout_busy_total. nil: not registered.
	Registerer prometheus.Registerer
}

// Routes mounts orders' API on mux. Who may call (ADR 0022):
//
//	POST /v1/orders              customer; the customer id is the token's subject
//	POST /v1/orders/{id}/cancel  the order's customer, or an operator
//	GET  /v1/orders/{id}         the order's customer, or an operator
//	GET  /v1/orders              a customer (their own orders), or an operator
//	GET  /v1/orders/{id}/events  the order's customer, or an operator: its outbox events
//	                             and where each was published (the order page's timeline)
//	GET  /v1/openapi.yaml        anyone: the API's contract (ordersapi.OpenAPI), documentation
//
// Another customer's order answers 404, as if it did not exist. Orders
// has no admin routes. Routes panics when a required Config field is
// missing: a wiring mistake.
func Routes(mux *http.ServeMux, svc Service, cfg Config) {
	if cfg.Authz == nil || cfg.Idempotency == nil {
		panic("orderhttp.Routes: Config.Authz and Config.Idempotency are required")
	}
	log := cfg.Log
	store := cfg.Idempotency
	wait := newConnWait(cfg.CheckoutConnWait, cfg.Registerer)
	enc := kithttp.ServerErrorEncoder(errorEncoder(log))
	replay := func(_ context.Context, w http.ResponseWriter, resp any) error {
		idempotency.WriteResponse(w, resp.(idempotency.Response))
		return nil
	}
	customer := auth.AnyOf(auth.RoleCustomer)
	ownerOrOperator := auth.AnyOf(auth.RoleCustomer, auth.RoleOperator)
	mux.Handle("GET /v1/openapi.yaml", httpkit.Document(httpkit.ContentTypeYAML, ordersapi.OpenAPI()))
	var place http.Handler = httpkit.NewKitServer(placeOrder(svc, store, wait), decodePlace(store), replay, log, enc)
	if cfg.CheckoutShedder != nil {
		place = cfg.CheckoutShedder(accepted(store, svc.Pool()))(place)
	}
	if cfg.CheckoutLimit != nil {
		place = cfg.CheckoutLimit(place)
	}
	mux.Handle("POST /v1/orders", cfg.Authz.Handle(customer, place))
	mux.Handle("POST /v1/orders/{id}/cancel", cfg.Authz.Handle(ownerOrOperator,
		httpkit.NewKitServer(cancelOrder(svc, store), decodeCancel(store), replay, log, enc)))
	mux.Handle("GET /v1/orders/{id}", cfg.Authz.Handle(ownerOrOperator,
		httpkit.NewKitServer(getOrder(svc), decodeGet, encodeVersioned, log, enc)))
	mux.Handle("GET /v1/orders/{id}/events", cfg.Authz.Handle(ownerOrOperator,
		httpkit.NewKitServer(orderEvents(svc), decodeGet, encodePrivate, log, enc)))
	mux.Handle("GET /v1/orders", cfg.Authz.Handle(ownerOrOperator,
		httpkit.NewKitServer(listOrders(svc), decodeList, encodePrivate, log, enc)))
}

// connWait bounds a checkout's wait for a database connection.
type connWait struct {
	max  time.Duration
	busy prometheus.Counter
}

// errBusy: a priced checkout found no database connection within its
// wait; nothing was written and the key was not used.
var errBusy = errors.New("orders: no database connection free within the checkout's wait")

// newConnWait makes the checkout's connection wait (Config.CheckoutConnWait)
// and its counter.
func newConnWait(max time.Duration, reg prometheus.Registerer) connWait {
	busy := prometheus.NewCounter(prometheus.CounterOpts{Name: "orders_checkout_busy_total",
		Help: "Checkouts answered 503 busy: no database connection was free within CHECKOUT_CONN_WAIT."})
	if reg != nil {
		reg.MustRegister(busy)
	}
	return connWait{max: max, busy: busy}
}

// acquire takes a connection for a checkout within w.max (errBusy
// past it). The caller releases it.
func (w connWait) acquire(ctx context.Context, pool *pgxpool.Pool) (*pgxpool.Conn, error) {
	if w.max <= 0 {
		return pool.Acquire(ctx)
	}
	actx, cancel := context.WithTimeout(ctx, w.max)
	defer cancel()
	conn, err := pool.Acquire(actx)
	if err != nil && ctx.Err() == nil && actx.Err() != nil {
		w.busy.Inc()
		return nil, errBusy
	}
	return conn, err
}

// accepted reports whether a checkout request is the retry of one whose
// Idempotency-Key is already stored for its caller (answered from the
// store, so no new work). Errors count as "not known".
func accepted(store *idempotency.Store, db interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}) func(*http.Request) bool {
	return func(r *http.Request) bool {
		p, ok := auth.FromContext(r.Context())
		key := r.Header.Get(idempotency.HeaderKey)
		if !ok || key == "" {
			return false
		}
		known, err := store.Known(r.Context(), db, p.IdempotencyScope(), key)
		return err == nil && known
	}
}

// encodePrivate writes a strong read: never stored by a browser or a CDN.
func encodePrivate(ctx context.Context, w http.ResponseWriter, resp any) error {
	httpcache.NoStore(w.Header())
	return httpkit.EncodeJSON(ctx, w, resp)
}

// --- place ---

type placeRequest struct {
	idem idempotency.Request
	in   ordersapi.CreateOrder
}

func decodePlace(store *idempotency.Store) kithttp.DecodeRequestFunc {
	return func(ctx context.Context, r *http.Request) (any, error) {
		p, err := auth.Caller(ctx)
		if err != nil {
			return nil, err
		}
		idem, err := store.ReadRequest(r, p.IdempotencyScope())
		if err != nil {
			return nil, err
		}
		var in ordersapi.CreateOrder
		if err := httpkit.DecodeJSON(r, &in, maxBodyBytes); err != nil {
			return nil, err
		}
		// The customer is the token's subject. A body that names another
		// is refused rather than silently rewritten: it is a client bug
		// or an attempt to order as somebody else.
		if in.CustomerID != "" && in.CustomerID != p.Subject {
			pr := httpkit.NewProblem(http.StatusForbidden, "customer-mismatch", "customer_id must be your own (the token's subject) or left out")
			pr.Errors = []httpkit.FieldError{{Field: "customer_id", Pointer: "#/customer_id", Message: "is not the signed-in customer"}}
			return nil, pr
		}
		in.CustomerID = p.Subject
		if err := order.ValidateCreate(in); err != nil {
			return nil, err
		}
		return placeRequest{idem: idem, in: in}, nil
	}
}

// placeOrder prices the order with catalog first, holding no database
// connection, then writes it inside the key's transaction. A checkout
// waiting on a slow catalog (up to the client's attempts × timeout) thus
// never holds one of the pool's few connections: while catalog is down,
// the requests behind it reach the open breaker at once instead of
// queueing for a connection (the catalog-down drill measured refusals at
// p95 5.5 s at 20 checkouts/s when pricing ran inside the transaction).
//
// The retry of a checkout whose key is already stored must be answered
// from the store even when pricing fails now (catalog down, a product
// archived since): a failed price lookup is followed by one read of the
// key, and a known key goes on to Do, which replays it (or answers 409
// while the first is in flight). A concurrent duplicate prices once more
// than needed (a read of catalog) and then gets its 409 or replay.
// Within one process, concurrent requests with the same caller, key and
// body share one price lookup (a client's retry storm costs catalog one
// call, as it did when only the key's holder priced); the shared call
// runs without the first caller's cancellation, bounded by the catalog
// client's attempts and timeouts.
func placeOrder(svc Service, store *idempotency.Store, wait connWait) endpoint.Endpoint {
	var pricing singleflight.Group
	return func(ctx context.Context, req any) (any, error) {
		r := req.(placeRequest)
		sum := sha256.Sum256(r.idem.Body)
		shared, perr, _ := pricing.Do(r.idem.Scope+"\x00"+r.idem.Key+"\x00"+string(sum[:]), func() (any, error) {
			return svc.Price(context.WithoutCancel(ctx), r.in)
		})
		lines, _ := shared.([]order.Line)
		lines = slices.Clone(lines)
		if perr != nil {
			known, err := store.Known(ctx, svc.Pool(), r.idem.Scope, r.idem.Key)
			if err != nil || !known {
				return nil, perr
			}
		}
		conn, err := wait.acquire(ctx, svc.Pool())
		if err != nil {
			return nil, err
		}
		defer conn.Release()
		resp, _, err := store.Do(ctx, conn, r.idem, func(ctx context.Context, tx pgx.Tx) (idempotency.Response, error) {
			if perr != nil { // the key was known but is not stored any more (expired): the lookup's error stands
				return idempotency.Response{}, perr
			}
			o, err := svc.Place(ctx, tx, r.in, lines)
			if err != nil {
				return idempotency.Response{}, err
			}
			return idempotency.Encode(ctx, created, o.API())
		})
		return resp, err
	}
}

func created(ctx context.Context, w http.ResponseWriter, resp any) error {
	return httpkit.EncodeJSON(ctx, w, createdOrder{resp.(ordersapi.Order)})
}

// createdOrder is a 201 with the new order's Location; its version is the
// ETag for a later If-Match.
type createdOrder struct{ ordersapi.Order }

func (createdOrder) StatusCode() int { return http.StatusCreated }

func (c createdOrder) Headers() http.Header {
	h := http.Header{}
	h.Set("Location", "/v1/orders/"+c.ID)
	h.Set("ETag", strconv.Quote(strconv.FormatInt(c.Version, 10)))
	httpcache.NoStore(h)
	return h
}

// StoredHeaders are the response fields an idempotent replay repeats.
func StoredHeaders() []string { return []string{"Content-Type", "Location", "ETag", "Cache-Control"} }

// --- cancel ---

type cancelRequest struct {
	idem      idempotency.Request
	owner     string
	id        string
	ifVersion int64
	reason    string
}

// cancelBody is the optional body of POST /v1/orders/{id}/cancel.
type cancelBody struct {
	Reason string `json:"reason"`
}

func decodeCancel(store *idempotency.Store) kithttp.DecodeRequestFunc {
	return func(ctx context.Context, r *http.Request) (any, error) {
		p, err := auth.Caller(ctx)
		if err != nil {
			return nil, err
		}
		id, err := orderID(r)
		if err != nil {
			return nil, err
		}
		idem, err := store.ReadRequest(r, p.IdempotencyScope())
		if err != nil {
			return nil, err
		}
		req := cancelRequest{idem: idem, owner: p.Owner(), id: id}
		if im := r.Header.Get("If-Match"); im != "" {
			v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(im, "W/"), `"`), 10, 64)
			if err != nil || v < 1 {
				return nil, httpkit.NewProblem(http.StatusBadRequest, "invalid-if-match", `If-Match must be the order's version as an ETag, such as "3"`)
			}
			req.ifVersion = v
		}
		if len(idem.Body) > 0 {
			var b cancelBody
			if err := httpkit.DecodeJSON(r, &b, maxBodyBytes); err != nil {
				return nil, err
			}
			if len(b.Reason) > 200 {
				p := httpkit.NewProblem(http.StatusUnprocessableEntity, "invalid-cancel", "the cancel request is not valid")
				p.Errors = []httpkit.FieldError{{Field: "reason", Pointer: "#/reason", Message: "must be at most 200 characters"}}
				return nil, p
			}
			req.reason = b.Reason
		}
		return req, nil
	}
}

func cancelOrder(svc Service, store *idempotency.Store) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		r := req.(cancelRequest)
		resp, _, err := store.Do(ctx, svc.Pool(), r.idem, func(ctx context.Context, tx pgx.Tx) (idempotency.Response, error) {
			o, err := svc.Cancel(ctx, tx, r.owner, r.id, r.ifVersion, r.reason)
			if err != nil {
				return idempotency.Response{}, err
			}
			return idempotency.Encode(ctx, encodeVersioned, o.API())
		})
		return resp, err
	}
}

// encodeVersioned writes an order with its version as the ETag, the value
// If-Match takes.
func encodeVersioned(ctx context.Context, w http.ResponseWriter, resp any) error {
	o := resp.(ordersapi.Order)
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(o.Version, 10)))
	return encodePrivate(ctx, w, o)
}

// --- reads ---

func orderID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	// Exactly the canonical form (lower-case, hyphenated, as orders
	// writes it): one order has one URL, as the API document says.
	if u, err := uuid.Parse(id); err != nil || u.String() != id {
		return "", httpkit.NewProblem(http.StatusNotFound, "not-found", "no such order")
	}
	return id, nil
}

type getRequest struct{ owner, id string }

func decodeGet(ctx context.Context, r *http.Request) (any, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	id, err := orderID(r)
	if err != nil {
		return nil, err
	}
	return getRequest{owner: p.Owner(), id: id}, nil
}

func getOrder(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		o, err := ownedOrder(ctx, svc, req.(getRequest))
		if err != nil {
			return nil, err
		}
		return o.API(), nil
	}
}

// ownedOrder reads the order r names, if r's caller may see it.
func ownedOrder(ctx context.Context, svc Service, r getRequest) (order.Order, error) {
	o, err := svc.Get(ctx, r.id)
	if err != nil {
		return order.Order{}, err
	}
	if r.owner != "" && o.CustomerID != r.owner {
		// Someone else's order is answered exactly like a missing one:
		// no existence oracle.
		return order.Order{}, order.ErrNotFound
	}
	return o, nil
}

// orderEvents answers the order's outbox events; like getOrder, someone
// else's order is not found. The relay's last error is for operators.
func orderEvents(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		r := req.(getRequest)
		if _, err := ownedOrder(ctx, svc, r); err != nil {
			return nil, err
		}
		recs, err := svc.Events(ctx, r.id)
		if err != nil {
			return nil, err
		}
		out := ordersapi.OrderEventList{Events: make([]ordersapi.OrderEvent, len(recs))}
		for i, rec := range recs {
			e := ordersapi.OrderEvent{EventID: rec.EventID, Type: rec.Type, Stream: rec.Stream, CreatedAt: rec.CreatedAt,
				PublishedAt: rec.PublishedAt, Partition: rec.Partition, Sequence: rec.Sequence, PublishAttempts: rec.Attempts,
				TraceID: traceID(rec.TraceParent)}
			if r.owner == "" {
				e.LastError = rec.LastError
			}
			out.Events[i] = e
		}
		return out, nil
	}
}

// traceID is the trace id of a W3C traceparent ("00-<trace id>-<span
// id>-<flags>"), or "".
func traceID(traceparent string) string {
	parts := strings.Split(traceparent, "-")
	if len(parts) != 4 || len(parts[1]) != 32 || strings.Trim(parts[1], "0") == "" {
		return ""
	}
	return parts[1]
}

type listRequest struct {
	customerID, pageToken string
	limit                 int
}

func decodeList(ctx context.Context, r *http.Request) (any, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	req := listRequest{customerID: q.Get("customer_id"), pageToken: q.Get("page_token"), limit: defaultPageSize}
	if owner := p.Owner(); owner != "" {
		// A customer lists their own orders; naming another is refused.
		if req.customerID != "" && req.customerID != owner {
			return nil, httpkit.NewProblem(http.StatusForbidden, "customer-mismatch", "customers can list only their own orders; leave customer_id out")
		}
		req.customerID = owner
	}
	var fields []httpkit.FieldError
	if req.customerID == "" {
		fields = append(fields, httpkit.FieldError{Field: "customer_id", Message: "is required (operators list one customer's orders at a time; use search for more)"})
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPageSize {
			fields = append(fields, httpkit.FieldError{Field: "limit", Message: fmt.Sprintf("must be 1..%d", maxPageSize)})
		}
		req.limit = n
	}
	if req.pageToken != "" {
		if _, err := uuid.Parse(req.pageToken); err != nil {
			fields = append(fields, httpkit.FieldError{Field: "page_token", Message: "is not a token this API returned"})
		}
	}
	if len(fields) > 0 {
		p := httpkit.NewProblem(http.StatusBadRequest, "invalid-query", "the query is not valid")
		p.Errors = fields
		return nil, p
	}
	return req, nil
}

func listOrders(svc Service) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		r := req.(listRequest)
		orders, next, err := svc.List(ctx, r.customerID, r.pageToken, r.limit)
		if err != nil {
			return nil, err
		}
		out := ordersapi.OrderList{Orders: make([]ordersapi.Order, len(orders)), NextPageToken: next}
		for i, o := range orders {
			out.Orders[i] = o.API()
		}
		return out, nil
	}
}

// --- errors ---

// errorEncoder maps orders' errors to problems; everything else is
// httpkit.ErrorEncoder's (500, logged).
func errorEncoder(log *slog.Logger) kithttp.ErrorEncoder {
	base := httpkit.ErrorEncoder(log)
	return func(ctx context.Context, err error, w http.ResponseWriter) {
		var (
			verr     *order.ValidationError
			terr     *order.TransitionError
			unpriced *ordersvc.UnpricedError
			rejected *ordersvc.CatalogRejectedError
			limit    *order.PaymentLimitError
		)
		httpcache.NoStore(w.Header())
		switch {
		case errors.As(err, &verr):
			p := httpkit.NewProblem(http.StatusUnprocessableEntity, "invalid-order", "the order is not valid; see errors")
			for _, f := range verr.Fields {
				p.Errors = append(p.Errors, httpkit.FieldError{Field: fieldName(f.Pointer), Pointer: "#" + f.Pointer, Message: f.Message})
			}
			err = p
		case errors.As(err, &unpriced):
			p := httpkit.NewProblem(http.StatusUnprocessableEntity, "not-on-sale",
				"some products cannot be ordered: unknown, no longer sold, or without a price in this currency")
			for _, l := range unpriced.Lines {
				ptr := "/items/" + strconv.Itoa(l.Index) + "/" + l.Ref
				p.Errors = append(p.Errors, httpkit.FieldError{Field: fieldName(ptr), Pointer: "#" + ptr,
					Message: fmt.Sprintf("%s %s is not on sale", l.Ref, l.Value)})
			}
			err = p
		case errors.As(err, &limit):
			p := httpkit.NewProblem(http.StatusUnprocessableEntity, "not-payable", limit.Detail())
			p.Errors = []httpkit.FieldError{{Field: fieldName(limit.Pointer()), Pointer: "#" + limit.Pointer(), Message: limit.Detail()}}
			err = p
		case errors.Is(err, errBusy):
			p := httpkit.NewProblem(http.StatusServiceUnavailable, "busy",
				"every database connection is taken; no order was placed, retry with the same Idempotency-Key after the Retry-After delay")
			p.RetryAfter = time.Second
			err = p
		case errors.Is(err, catalogapi.ErrUnavailable):
			log.WarnContext(ctx, "catalog unavailable", "err", err)
			p := httpkit.NewProblem(http.StatusServiceUnavailable, "catalog-unavailable",
				"prices cannot be looked up right now; no order was placed, retry with the same Idempotency-Key")
			p.RetryAfter = max(catalogapi.RetryAfter(err), time.Second)
			err = p
		case errors.As(err, &rejected):
			log.ErrorContext(ctx, "catalog rejected a price lookup", "err", err)
			err = httpkit.NewProblem(http.StatusBadGateway, "catalog-rejected", "the price lookup failed; no order was placed")
		case errors.As(err, &terr):
			err = httpkit.NewProblem(http.StatusConflict, "illegal-transition",
				fmt.Sprintf("the order is %s (version %d) and cannot become %s", terr.From, terr.Version, terr.To))
		case errors.Is(err, order.ErrVersionMismatch):
			err = httpkit.NewProblem(http.StatusPreconditionFailed, "version-mismatch",
				"the order changed since you read it; GET it again and retry with its ETag")
		case errors.Is(err, order.ErrNotFound):
			err = httpkit.NewProblem(http.StatusNotFound, "not-found", "no such order")
		}
		base(ctx, err, w)
	}
}

// fieldName turns a JSON Pointer into the dotted field name
// ("/items/2/quantity" → "items.2.quantity").
func fieldName(pointer string) string {
	return strings.ReplaceAll(strings.TrimPrefix(pointer, "/"), "/", ".")
}
