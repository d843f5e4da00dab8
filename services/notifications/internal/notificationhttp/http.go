// Package notificationhttp is notifications' HTTP transport (go-kit
// endpoints): what was sent for an order, and the one place where
// notifications' errors become statuses.
package notificationhttp

import (
	"context"
	"log/slog"
	"net/http"

	kithttp "github.com/go-kit/kit/transport/http"
	"github.com/google/uuid"

	"github.com/shopfloor/shopfloor/pkg/httpcache"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notification"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notificationsvc"
	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
)

// Lister reads an order's notifications (notificationsvc.Service).
type Lister interface {
	ListByOrder(ctx context.Context, orderID string) ([]notification.Notification, error)
}

var _ Lister = (*notificationsvc.Service)(nil)

// Routes mounts notifications' API on mux:
//
//	GET /v1/notifications?order_id=ID   notificationsapi.NotificationList (200, possibly
//	                                     empty: the projection follows ORDERS and may lag);
//	                                     400 problem+json when order_id is missing or not
//	                                     an order id (a lower-case UUID)
//
// Answers are never cached (Cache-Control: no-store): statuses change.
func Routes(mux *http.ServeMux, svc Lister, log *slog.Logger) {
	mux.Handle("GET /v1/notifications", httpkit.NewKitServer(list(svc), decodeList, encodePrivate, log,
		kithttp.ServerErrorEncoder(errorEncoder(log))))
}

// AdminRoutes mounts the e-mail queue's operator endpoints
// (jobqueue.Client.AdminRoutes: stats, dead letters, inspect with redacted
// bodies, redrive, purge) under /v1/admin/queues, behind the admin token.
func AdminRoutes(mux *http.ServeMux, jobs *jobqueue.Client, token string) {
	admin := http.NewServeMux()
	jobs.AdminRoutes(admin, "/v1/admin/queues")
	mux.Handle("/v1/admin/", httpkit.RequireBearer("notifications-admin", token, admin))
}

func encodePrivate(ctx context.Context, w http.ResponseWriter, resp any) error {
	httpcache.NoStore(w.Header())
	return httpkit.EncodeJSON(ctx, w, resp)
}

func decodeList(_ context.Context, r *http.Request) (any, error) {
	id := r.URL.Query().Get("order_id")
	msg := ""
	if id == "" {
		msg = "is required"
	} else if u, err := uuid.Parse(id); err != nil || u.String() != id {
		msg = "must be an order id (a lower-case UUID)"
	}
	if msg != "" {
		p := httpkit.NewProblem(http.StatusBadRequest, "invalid-query", "order_id "+msg+": GET /v1/notifications?order_id=<order id>")
		p.Errors = []httpkit.FieldError{{Field: "order_id", Message: msg}}
		return nil, p
	}
	return id, nil
}

func list(svc Lister) func(ctx context.Context, req any) (any, error) {
	return func(ctx context.Context, req any) (any, error) {
		orderID := req.(string)
		ns, err := svc.ListByOrder(ctx, orderID)
		if err != nil {
			return nil, err
		}
		out := notificationsapi.NotificationList{OrderID: orderID, Notifications: make([]notificationsapi.Notification, len(ns))}
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
