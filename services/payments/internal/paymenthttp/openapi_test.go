package paymenthttp_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/httpkit/openapitest"
	"github.com/shopfloor/shopfloor/pkg/idempotency"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/services/payments/internal/paymenthttp"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// TestOpenAPIDocumentsEveryRouteAndNothingElse: the routes Routes mounts,
// with the admin mux behind /v1/admin/ expanded, are exactly the
// document's operations. (That every answer fits the document is checked
// by every test: setup's server validates them.)
func TestOpenAPIDocumentsEveryRouteAndNothingElse(t *testing.T) {
	t.Parallel()
	doc := openapitest.Load(t, paymentsapi.OpenAPI())
	authz := openapitest.Verifier(t, "payments")
	log := slog.New(slog.DiscardHandler)
	mux := http.NewServeMux()
	// Routes only mounts handlers; it calls nothing on the service, the
	// store or the job queue (which has no database here).
	store, err := idempotency.New(idempotency.Config{})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := jobqueue.New(nil, jobqueue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	paymenthttp.Routes(mux, nil, paymenthttp.Config{Authz: authz, Log: log, Idempotency: store, Jobs: jobs})
	doc.CheckRoutes(t, openapitest.Expand(openapitest.Patterns(mux), "/v1/admin/", openapitest.Patterns(paymenthttp.AdminMux(log))))
}

// TestOpenAPIDocumentIsServed: GET /v1/openapi.yaml answers the embedded
// document to anyone, no token needed.
func TestOpenAPIDocumentIsServed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(t, "GET", "/v1/openapi.yaml", nil, nil)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/yaml" || !bytes.Equal(r.body, paymentsapi.OpenAPI()) {
		t.Fatalf("GET /v1/openapi.yaml = %d %q, %d bytes; want 200 application/yaml, the embedded document", r.status, r.header.Get("Content-Type"), len(r.body))
	}
}
