package producthttp_test

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/httpkit/openapitest"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/catalog/internal/producthttp"
)

// TestOpenAPIDocumentsEveryRouteAndNothingElse: the routes Routes mounts
// are exactly the document's operations. (That every answer fits the
// document is checked by every test: setup's server validates them.)
func TestOpenAPIDocumentsEveryRouteAndNothingElse(t *testing.T) {
	t.Parallel()
	doc := openapitest.Load(t, catalogapi.OpenAPI())
	authz := openapitest.Verifier(t, "catalog")
	mux := http.NewServeMux()
	// Routes only mounts handlers; it calls nothing on the service.
	producthttp.Routes(mux, nil, producthttp.Config{Authz: authz})
	doc.CheckRoutes(t, openapitest.Patterns(mux))
}

// TestOpenAPIDocumentIsServed: GET /v1/openapi.yaml answers the embedded
// document to anyone, with an ETag that If-None-Match revalidates.
func TestOpenAPIDocumentIsServed(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	r := b.do(t, "GET", "/v1/openapi.yaml", nil, nil)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/yaml" || !bytes.Equal(r.body, catalogapi.OpenAPI()) {
		t.Fatalf("GET /v1/openapi.yaml = %d %q, %d bytes; want 200 application/yaml, the embedded document", r.status, r.header.Get("Content-Type"), len(r.body))
	}
	if again := b.do(t, "GET", "/v1/openapi.yaml", nil, map[string]string{"If-None-Match": r.header.Get("ETag")}); again.status != http.StatusNotModified {
		t.Errorf("revalidation = %d, want 304", again.status)
	}
}
