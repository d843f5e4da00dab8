package notificationhttp_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/httpkit/openapitest"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notificationhttp"
	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
)

// TestOpenAPIDocumentsEveryRouteAndNothingElse: the routes Routes mounts, with the admin mux behind /v1/admin/ expanded, are
// exactly the document's operations. (That every answer fits the
// document is checked by every test: setup's server validates them.)
func TestOpenAPIDocumentsEveryRouteAndNothingElse(t *testing.T) {
	t.Parallel()
	doc := openapitest.Load(t, notificationsapi.OpenAPI())
	authz := openapitest.Verifier(t, "notifications")
	mux := http.NewServeMux()
	// Routes only mounts handlers; nothing is called on the nil service
	// or the job queue (which has no database here).
	jobs, err := jobqueue.New(nil, jobqueue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	notificationhttp.Routes(mux, nil, notificationhttp.Config{Authz: authz, Jobs: jobs})
	doc.CheckRoutes(t, openapitest.Expand(openapitest.Patterns(mux), "/v1/admin/", openapitest.Patterns(notificationhttp.AdminMux())))
}

// TestOpenAPIDocumentIsServed: GET /v1/openapi.yaml answers the embedded
// document to anyone, no token needed.
func TestOpenAPIDocumentIsServed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, b.url+"/v1/openapi.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/yaml" || !bytes.Equal(body, notificationsapi.OpenAPI()) {
		t.Fatalf("GET /v1/openapi.yaml = %d %q, %d bytes; want 200 application/yaml, the embedded document", res.StatusCode, res.Header.Get("Content-Type"), len(body))
	}
}
