package openapitest_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/httpkit/openapitest"
)

const spec = `
openapi: 3.1.0
info: {title: t, version: "1"}
paths:
  /v1/things/{id}:
    get:
      parameters:
        - {name: id, in: path, required: true, schema: {type: string}}
        - {name: limit, in: query, schema: {type: integer, maximum: 10}}
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema:
                type: object
                required: [n]
                properties: {n: {type: integer}}
        "400": {description: bad}
`

// TestPatternsListsWhatAMuxServes: the reflection into net/http's mux
// still finds every kind of pattern (a Go release that moves it fails
// here, not in a service's route check).
func TestPatternsListsWhatAMuxServes(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	want := []string{"/v1/admin/", "DELETE /v1/x/{id}/pause", "GET /v1/products:batch", "GET /v1/x/{id}", "POST /v1/x"}
	for _, p := range want {
		mux.Handle(p, http.NotFoundHandler())
	}
	if got := openapitest.Patterns(mux); !slices.Equal(got, want) {
		t.Fatalf("Patterns = %q, want %q", got, want)
	}
	if got := openapitest.Expand(want, "/v1/admin/", []string{"GET /v1/admin/a"}); slices.Contains(got, "/v1/admin/") || !slices.Contains(got, "GET /v1/admin/a") {
		t.Fatalf("Expand = %q", got)
	}
}

// recorder is a testing.TB that keeps what Errorf reports.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, format)
}

// TestHandlerReportsWhatTheDocumentRefuses: a wrong answer body, an
// undocumented status, and a 2xx to a request the document refuses are
// each reported; a right answer and an undocumented route are not.
func TestHandlerReportsWhatTheDocumentRefuses(t *testing.T) {
	t.Parallel()
	doc := openapitest.Load(t, []byte(spec))
	for _, tc := range []struct {
		name, target, body string
		status             int
		wantErr            string
	}{
		{"fits", "/v1/things/a?limit=3", `{"n":1}`, 200, ""},
		{"wrong type", "/v1/things/a", `{"n":"one"}`, 200, "does not fit"},
		{"undocumented status", "/v1/things/a", `{}`, 418, "does not fit"},
		{"refused request answered 200", "/v1/things/a?limit=99", `{"n":1}`, 200, "refuses the request"},
		{"refused request answered 400", "/v1/things/a?limit=99", ``, 400, ""},
		{"route not in the document", "/healthz", `nonsense`, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{TB: t}
			h := doc.Handler(rec, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tc.target, nil))
			if w.Code != tc.status || w.Body.String() != tc.body {
				t.Errorf("the answer was changed: %d %q", w.Code, w.Body.String())
			}
			got := strings.Join(rec.errs, "\n")
			if tc.wantErr == "" && got != "" || tc.wantErr != "" && !strings.Contains(got, tc.wantErr) {
				t.Errorf("reported %q, want %q", got, tc.wantErr)
			}
		})
	}
}
