package paymenthttp

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	kithttp "github.com/go-kit/kit/transport/http"

	"github.com/shopfloor/shopfloor/pkg/audit"
	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymentsvc"
)

// adminRoutes mounts payments' own operator tools on the admin mux (which
// Routes guards: operators only; the admin listener only, ADR 0023):
//
//	GET  /v1/admin/refunds                 open refunds (retrying, or refused)
//	POST /v1/admin/refunds/{id}/abandon    {"reason": "..."}: give one up for
//	                                       good; the operator (token subject)
//	                                       and the reason go to the audit log
//	GET  /v1/admin/audit?action=&limit=    the audit log, newest first
func adminRoutes(admin *http.ServeMux, svc Service, log *slog.Logger, enc kithttp.ServerOption) {
	admin.Handle("GET /v1/admin/refunds", httpkit.NewKitServer(func(ctx context.Context, _ any) (any, error) {
		open, err := svc.OpenRefunds(ctx, 200)
		return map[string]any{"refunds": open}, err
	}, kithttp.NopRequestDecoder, encodePrivate, log, enc))
	admin.Handle("POST /v1/admin/refunds/{id}/abandon", httpkit.NewKitServer(func(ctx context.Context, req any) (any, error) {
		r := req.(abandonRequest)
		return svc.AbandonRefund(ctx, r.id, r.actor, r.Reason)
	}, decodeAbandon, encodePrivate, log, enc))
	admin.Handle("GET /v1/admin/audit", httpkit.NewKitServer(func(ctx context.Context, req any) (any, error) {
		r := req.(auditRequest)
		entries, err := svc.Audit(ctx, r.action, r.limit)
		return map[string]any{"entries": entries}, err
	}, decodeAudit, encodePrivate, log, enc))
}

type abandonRequest struct {
	Reason string `json:"reason"`
	id     string
	actor  string
}

func decodeAbandon(ctx context.Context, r *http.Request) (any, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	var req abandonRequest
	if err := httpkit.DecodeJSON(r, &req, 4<<10); err != nil {
		return nil, err
	}
	req.id, req.actor = r.PathValue("id"), p.Subject
	return req, nil
}

type auditRequest struct {
	action string
	limit  int
}

func decodeAudit(_ context.Context, r *http.Request) (any, error) {
	q := r.URL.Query()
	req := auditRequest{action: q.Get("action"), limit: 50}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			pr := httpkit.NewProblem(http.StatusBadRequest, "invalid-query", "limit must be 1..1000")
			pr.Errors = []httpkit.FieldError{{Field: "limit", Message: "must be 1..1000"}}
			return nil, pr
		}
		req.limit = n
	}
	return req, nil
}

// adminProblem maps the admin tools' errors to problems; nil when err is
// not one of them.
func adminProblem(err error) *httpkit.Problem {
	switch {
	case errors.Is(err, audit.ErrInvalid):
		return httpkit.NewProblem(http.StatusBadRequest, "invalid-request", err.Error())
	case errors.Is(err, paymentsvc.ErrRefundClosed):
		return httpkit.NewProblem(http.StatusConflict, "refund-closed", "the refund succeeded or was abandoned already")
	}
	return nil
}
