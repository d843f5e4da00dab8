package orderhttp_test

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/httpkit/openapitest"
	"github.com/shopfloor/shopfloor/pkg/idempotency"
	"github.com/shopfloor/shopfloor/services/orders/internal/orderhttp"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

// TestOpenAPIDocumentsEveryRouteAndNothingElse: the routes Routes mounts
// are exactly the document's operations. (That every answer fits the
// document is checked by every test: setup's server validates them.)
func TestOpenAPIDocumentsEveryRouteAndNothingElse(t *testing.T) {
	t.Parallel()
	doc := openapitest.Load(t, ordersapi.OpenAPI())
	authz := openapitest.Verifier(t, "orders")
	mux := http.NewServeMux()
	// Routes only mounts handlers; it calls nothing on the service or the
	// store. The shedder mounts no route of its own.
	store, err := idempotency.New(idempotency.Config{})
	if err != nil {
		t.Fatal(err)
	}
	orderhttp.Routes(mux, nil, orderhttp.Config{Authz: authz, Idempotency: store})
	doc.CheckRoutes(t, openapitest.Patterns(mux))
}

// TestOpenAPIDocumentIsServed: GET /v1/openapi.yaml answers the embedded
// document to anyone, no token needed.
func TestOpenAPIDocumentIsServed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(t, "GET", "/v1/openapi.yaml", nil, map[string]string{"Authorization": ""})
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/yaml" || !bytes.Equal(r.body, ordersapi.OpenAPI()) {
		t.Fatalf("GET /v1/openapi.yaml = %d %q, %d bytes; want 200 application/yaml, the embedded document", r.status, r.header.Get("Content-Type"), len(r.body))
	}
}
