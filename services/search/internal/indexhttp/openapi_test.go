package indexhttp_test

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/httpkit/openapitest"
	"github.com/shopfloor/shopfloor/services/search/internal/indexhttp"
	"github.com/shopfloor/shopfloor/services/search/internal/searchtest"
	"github.com/shopfloor/shopfloor/services/search/searchapi"
)

// TestOpenAPIDocumentsEveryRouteAndNothingElse: the routes Routes mounts
// are exactly the document's operations. (That every answer fits the
// document is checked by every test: searchtest's server validates them.)
func TestOpenAPIDocumentsEveryRouteAndNothingElse(t *testing.T) {
	t.Parallel()
	doc := openapitest.Load(t, searchapi.OpenAPI())
	authz := openapitest.Verifier(t, "search")
	mux := http.NewServeMux()
	// Routes only mounts handlers; it calls nothing on the searcher.
	indexhttp.Routes(mux, nil, indexhttp.Config{Authz: authz})
	doc.CheckRoutes(t, openapitest.Patterns(mux))
}

// TestOpenAPIDocumentIsServed: GET /v1/openapi.yaml answers the embedded
// document to anyone, no token needed.
func TestOpenAPIDocumentIsServed(t *testing.T) {
	t.Parallel()
	s := searchtest.Start(t, 1)
	a := s.GetAs(t, "/v1/openapi.yaml", "")
	if a.Status != http.StatusOK || a.Header.Get("Content-Type") != "application/yaml" || !bytes.Equal(a.Body, searchapi.OpenAPI()) {
		t.Fatalf("GET /v1/openapi.yaml = %d %q, %d bytes; want 200 application/yaml, the embedded document", a.Status, a.Header.Get("Content-Type"), len(a.Body))
	}
}
