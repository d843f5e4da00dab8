package httpkit_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
)

// TestDocumentIsServedWithARevalidatableETag: the document as given, its
// media type, an ETag that changes with the document, and 304 for a
// matching If-None-Match.
func TestDocumentIsServedWithARevalidatableETag(t *testing.T) {
	t.Parallel()
	h := httpkit.Document(httpkit.ContentTypeYAML, []byte("openapi: 3.1.0\n"))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/openapi.yaml", nil))
	etag := w.Header().Get("ETag")
	if w.Code != http.StatusOK || w.Body.String() != "openapi: 3.1.0\n" || w.Header().Get("Content-Type") != "application/yaml" || etag == "" {
		t.Fatalf("GET = %d %q %v", w.Code, w.Body.String(), w.Header())
	}
	w = httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/v1/openapi.yaml", nil)
	r.Header.Set("If-None-Match", etag)
	h.ServeHTTP(w, r)
	if w.Code != http.StatusNotModified {
		t.Errorf("revalidation = %d, want 304", w.Code)
	}
	other := httptest.NewRecorder()
	httpkit.Document(httpkit.ContentTypeYAML, []byte("openapi: 3.1.1\n")).ServeHTTP(other, httptest.NewRequest(http.MethodGet, "/", nil))
	if other.Header().Get("ETag") == etag {
		t.Errorf("two documents share the ETag %s", etag)
	}
}
