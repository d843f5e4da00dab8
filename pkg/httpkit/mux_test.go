package httpkit_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
)

func TestNewMuxServesHealthAndMetricsAndAnswersProblems(t *testing.T) {
	t.Parallel()
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "# metrics\n") })
	mux := httpkit.NewMux(httpkit.NewHealth(), metrics)
	mux.HandleFunc("POST /v1/items", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusCreated) })
	mux.HandleFunc("GET /v1/items/{id}", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "{}") })
	mux.HandleFunc("DELETE /v1/items/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	ts := newServer(t, mux)

	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantClass  string // problem class, "" for a non-problem answer
		wantAllow  string
		wantBody   string // substring
	}{
		{name: "healthz", method: "GET", path: "/healthz", wantStatus: 200, wantBody: `"status":"ok"`},
		{name: "healthz head", method: "HEAD", path: "/healthz", wantStatus: 200},
		{name: "readyz", method: "GET", path: "/readyz", wantStatus: 200, wantBody: `"status":"ready"`},
		{name: "metrics", method: "GET", path: "/metrics", wantStatus: 200, wantBody: "# metrics"},
		{name: "service route", method: "POST", path: "/v1/items", wantStatus: 201},
		{name: "unknown route", method: "GET", path: "/v1/nope", wantStatus: 404, wantClass: "not-found", wantBody: "/v1/nope"},
		{name: "root", method: "GET", path: "/", wantStatus: 404, wantClass: "not-found"},
		{name: "wrong method on standard endpoint", method: "POST", path: "/healthz", wantStatus: 405, wantClass: "method-not-allowed", wantAllow: "GET, HEAD"},
		{name: "wrong method on service route", method: "GET", path: "/v1/items", wantStatus: 405, wantClass: "method-not-allowed", wantAllow: "POST"},
		{name: "wrong method with wildcard", method: "PUT", path: "/v1/items/7", wantStatus: 405, wantClass: "method-not-allowed", wantAllow: "GET, HEAD, DELETE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := do(t, ts, tt.method, tt.path, "", nil)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.wantStatus, resp.Body)
			}
			if tt.wantClass != "" {
				if p := parseProblem(t, resp.Header, resp.Body); p.Class() != tt.wantClass || p.Status != tt.wantStatus {
					t.Fatalf("problem %+v", p)
				}
			}
			if got := resp.Header.Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow %q, want %q", got, tt.wantAllow)
			}
			if !strings.Contains(string(resp.Body), tt.wantBody) {
				t.Errorf("body %s does not contain %q", resp.Body, tt.wantBody)
			}
		})
	}
}

func TestNewMuxWithoutMetrics(t *testing.T) {
	t.Parallel()
	ts := newServer(t, httpkit.NewMux(httpkit.NewHealth(), nil))
	resp := do(t, ts, http.MethodGet, "/metrics", "", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d; body %s", resp.StatusCode, resp.Body)
	}
	if p := parseProblem(t, resp.Header, resp.Body); p.Class() != "not-found" {
		t.Fatalf("problem %+v", p)
	}
}

// TestPublicAndAdminMux: the two listeners of a service share one Health.
// The public mux answers readiness without reasons and never serves
// /metrics or the admin API, even when the service mounts a handler on
// "/v1/" that has admin routes; the admin mux serves both, and readiness
// with each check's error.
func TestPublicAndAdminMux(t *testing.T) {
	t.Parallel()
	h := httpkit.NewHealth()
	h.AddCheck("postgres", func(context.Context) error { return errors.New("dial tcp 10.0.0.5:5432: connection refused") })
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "# metrics\n") })
	// What a service's API gate holds: public and admin routes in one mux.
	api := http.NewServeMux()
	api.HandleFunc("GET /v1/items", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "items") })
	api.HandleFunc("/v1/admin/", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "admin secrets") })
	public := httpkit.NewPublicMux(h)
	public.Handle("/v1/", api)
	admin := httpkit.NewAdminMux(h, metrics)
	admin.Handle(httpkit.AdminPrefix, api)
	pub, adm := newServer(t, public), newServer(t, admin)

	tests := []struct {
		name       string
		ts         *httptest.Server
		method     string
		path       string
		wantStatus int
		wantBody   string // substring
		notBody    string // must not appear
	}{
		{"public healthz", pub, "GET", "/healthz", 200, `"status":"ok"`, ""},
		{"public readyz has no reasons", pub, "GET", "/readyz", 503, "problems/not-ready", "postgres"},
		{"public readyz has no errors", pub, "GET", "/readyz", 503, "not ready", "10.0.0.5"},
		{"public api", pub, "GET", "/v1/items", 200, "items", ""},
		{"public metrics", pub, "GET", "/metrics", 404, "not-found", "# metrics"},
		{"public metrics subpath", pub, "GET", "/metrics/x", 404, "not-found", ""},
		{"public admin", pub, "GET", "/v1/admin/products/x", 404, "not-found", "secrets"},
		{"public admin root", pub, "GET", "/v1/admin", 404, "not-found", "secrets"},
		{"public admin post", pub, "POST", "/v1/admin/queues/x/redrive", 404, "not-found", "secrets"},
		{"public admin double slash", pub, "GET", "//v1//admin/products/x", 404, "", "secrets"},
		{"public admin dot segments", pub, "GET", "/v1/items/../admin/products/x", 404, "", "secrets"},
		{"public admin percent-encoded", pub, "GET", "/v1/%61dmin/products/x", 404, "", "secrets"},
		{"public admin upper case", pub, "GET", "/V1/ADMIN/products/x", 404, "", "secrets"},
		{"admin healthz", adm, "GET", "/healthz", 200, `"status":"ok"`, ""},
		{"admin readyz names the check and its error", adm, "GET", "/readyz", 503, "dial tcp 10.0.0.5:5432", ""},
		{"admin metrics", adm, "GET", "/metrics", 200, "# metrics", ""},
		{"admin api", adm, "GET", "/v1/admin/products/x", 200, "admin secrets", ""},
		{"admin serves no public api", adm, "GET", "/v1/items", 404, "not-found", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := do(t, tt.ts, tt.method, tt.path, "", nil)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%s %s = %d, want %d; body %s", tt.method, tt.path, resp.StatusCode, tt.wantStatus, resp.Body)
			}
			if !strings.Contains(string(resp.Body), tt.wantBody) || (tt.notBody != "" && strings.Contains(string(resp.Body), tt.notBody)) {
				t.Fatalf("%s %s: body %s; want %q in it and not %q", tt.method, tt.path, resp.Body, tt.wantBody, tt.notBody)
			}
		})
	}
}

func TestPublicReadyzWhenReady(t *testing.T) {
	t.Parallel()
	h := httpkit.NewHealth()
	h.AddCheck("postgres", func(context.Context) error { return nil })
	ts := newServer(t, httpkit.NewPublicMux(h))
	resp := do(t, ts, http.MethodGet, "/readyz", "", nil)
	if got := strings.TrimSpace(string(resp.Body)); resp.StatusCode != http.StatusOK || got != `{"status":"ready"}` {
		t.Fatalf("readyz = %d %s, want 200 {\"status\":\"ready\"}", resp.StatusCode, got)
	}
	h.SetDraining()
	if resp := do(t, ts, http.MethodGet, "/readyz", "", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("draining: readyz = %d %s", resp.StatusCode, resp.Body)
	}
}

// TestMountPprof: Go's profiles are on an operators' mux only when asked
// for (ADMIN_PPROF), never on the public one.
func TestMountPprof(t *testing.T) {
	t.Parallel()
	h := httpkit.NewHealth()
	plain := newServer(t, httpkit.NewAdminMux(h, nil))
	profiled := httpkit.NewAdminMux(h, nil)
	httpkit.MountPprof(profiled)
	prof, pub := newServer(t, profiled), newServer(t, httpkit.NewPublicMux(h))
	for _, tt := range []struct {
		name string
		ts   *httptest.Server
		path string
		want int
		body string
	}{
		{"admin without pprof", plain, "/debug/pprof/", 404, "not-found"},
		{"admin index", prof, "/debug/pprof/", 200, "goroutine"},
		{"admin heap", prof, "/debug/pprof/heap?debug=1", 200, "heap profile"},
		{"admin goroutines", prof, "/debug/pprof/goroutine?debug=1", 200, "goroutine profile"},
		{"public", pub, "/debug/pprof/heap?debug=1", 404, "not-found"},
	} {
		resp := do(t, tt.ts, "GET", tt.path, "", nil)
		body := resp.Body
		if resp.StatusCode != tt.want || !strings.Contains(string(body), tt.body) {
			t.Errorf("%s: GET %s = %d %.80q, want %d with %q", tt.name, tt.path, resp.StatusCode, body, tt.want, tt.body)
		}
	}
}
