package httpkit_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
)

func TestNewMux(t *testing.T) {
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
