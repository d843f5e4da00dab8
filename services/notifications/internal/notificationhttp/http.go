// Package notificationhttp is notifications' HTTP transport (go-kit
// endpoints): what was sent for an order — to an operator, or to the
// order's own customer — and the one place where notifications' errors
// become statuses.
package notificationhttp

import (
	"context"
	"log/slog"
	"net/http"

	kithttp "github.com/go-kit/kit/transport/http"
	"github.com/google/uuid"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/httpcache"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notification"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notificationsvc"
	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
)

// Service is what the routes call: notifications' use cases
// (*notificationsvc.Service), declared here where they are used.
type Service interface {
	// ListByOrder reads an order's notifications; customerID "" reads
	// every row, anything else only that customer's.
	ListByOrder(ctx context.Context, orderID, customerID string) ([]notification.Notification, error)
}

var _ Service = (*notificationsvc.Service)(nil)

// Config is what the routes need beside the use cases.
type Config struct {
	// Authz verifies bearer tokens (ADR 0022). Required.
	Authz *auth.Verifier
	// Log receives what the error encoder logs (500s). nil: discarded.
	Log *slog.Logger
	// Jobs is the e-mail queue whose operator tools /v1/admin/queues/
	// serves (jobqueue.Client.AdminRoutes). Required.
	Jobs *jobqueue.Client
}

// Routes mounts notifications' API on mux. Who may call (ADR 0022):
//
//	GET /v1/notifications?order_id=ID   an operator (any order), or a customer (their own
//	                                     orders only); notificationsapi.NotificationList
//	                                     (200, possibly empty: the projection follows
//	                                     ORDERS and may lag); 400 problem+json when
//	                                     order_id is missing or not an order id (a
//	                                     lower-case UUID)
//
// A customer asking for another customer's order gets exactly what an
// order without notifications gets — 200 with an empty list — so order
// ids cannot be probed; so do rows whose customer is not known (recorded
// before events carried it), which only operators see. Service clients
// are 403, callers without a valid token 401 (pkg/auth). Answers are
// never cached (Cache-Control: no-store): statuses change, and they are
// per caller.
//
//	GET /v1/openapi.yaml                anyone: the API's contract (notificationsapi.OpenAPI),
//	                                     documentation
//	/v1/admin/queues/...                an operator (served on the admin listener only,
//	                                     ADR 0023): the e-mail queue's tools
//	                                     (jobqueue.Client.AdminRoutes: stats, dead letters,
//	                                     inspect with redacted bodies, redrive, purge)
//
// Routes panics when a required Config field is missing: a wiring
// mistake.
func Routes(mux *http.ServeMux, svc Service, cfg Config) {
	if cfg.Authz == nil || cfg.Jobs == nil {
		panic("notificationhttp.Routes: Config.Authz and Config.Jobs are required")
	}
	log := cfg.Log
	mux.Handle("GET /v1/openapi.yaml", httpkit.Document(httpkit.ContentTypeYAML, notificationsapi.OpenAPI()))
	mux.Handle("GET /v1/notifications", cfg.Authz.Handle(auth.AnyOf(auth.RoleCustomer, auth.RoleOperator),
		httpkit.NewKitServer(list(svc), decodeList, encodePrivate, log, kithttp.ServerErrorEncoder(errorEncoder(log)))))
	mux.Handle("/v1/admin/", cfg.Authz.Handle(auth.AnyOf(auth.RoleOperator), adminMux(cfg.Jobs)))
}

// adminMux is the admin API Routes mounts at /v1/admin/ behind the
// operator check.
func adminMux(jobs *jobqueue.Client) *http.ServeMux {
	admin := http.NewServeMux()
	jobs.AdminRoutes(admin, "/v1/admin/queues")
	return admin
}

func encodePrivate(ctx context.Context, w http.ResponseWriter, resp any) error {
	httpcache.NoStore(w.Header())
	return httpkit.EncodeJSON(ctx, w, resp)
}

// listRequest is a validated list query: the order, and the customer
// whose rows the caller may see ("" for an operator: every row).
type listRequest struct{ orderID, customerID string }

func decodeList(ctx context.Context, r *http.Request) (any, error) {
	// A route mounted without auth.Require has no principal: a wiring
	// mistake, answered 401, never read as "anybody".
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	id := r.URL.Query().Get("order_id")
	msg := ""
	if id == "" {
		msg = "is required"
	} else if u, err := uuid.Parse(id); err != nil || u.String() != id {
		msg = "must be an order id (a lower-case UUID)"
	}
	if msg != "" {
		pr := httpkit.NewProblem(http.StatusBadRequest, "invalid-query", "order_id "+msg+": GET /v1/notifications?order_id=<order id>")
		pr.Errors = []httpkit.FieldError{{Field: "order_id", Message: msg}}
		return nil, pr
	}
	return listRequest{orderID: id, customerID: p.Owner()}, nil
}

func list(svc Service) func(ctx context.Context, req any) (any, error) {
	return func(ctx context.Context, req any) (any, error) {
		r := req.(listRequest)
		ns, err := svc.ListByOrder(ctx, r.orderID, r.customerID)
		if err != nil {
			return nil, err
		}
		out := notificationsapi.NotificationList{OrderID: r.orderID, Notifications: make([]notificationsapi.Notification, len(ns))}
		for i, n := range ns {
			out.Notifications[i] = n.API()
		}
		return out, nil
	}
}

// errorEncoder: problems as they are, everything else a logged 500 (via
// httpkit.ErrorEncoder); never cached.
func errorEncoder(log *slog.Logger) kithttp.ErrorEncoder {
	base := httpkit.ErrorEncoder(log)
	return func(ctx context.Context, err error, w http.ResponseWriter) {
		httpcache.NoStore(w.Header())
		base(ctx, err, w)
	}
}
