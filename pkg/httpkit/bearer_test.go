package httpkit_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
)

func TestRequireBearer(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for _, tc := range []struct {
		name, token, header string
		want                int
	}{
		{"right token", "s3cret-admin-token", "Bearer s3cret-admin-token", http.StatusNoContent},
		{"no header", "s3cret-admin-token", "", http.StatusUnauthorized},
		{"wrong token", "s3cret-admin-token", "Bearer s3cret-admin-tokeN", http.StatusUnauthorized},
		{"prefix of the token", "s3cret-admin-token", "Bearer s3cret", http.StatusUnauthorized},
		{"not a bearer", "s3cret-admin-token", "Basic s3cret-admin-token", http.StatusUnauthorized},
		{"empty token configured", "", "Bearer ", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/v1/admin/queues", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			rec := httptest.NewRecorder()
			httpkit.RequireBearer("test-admin", tc.token, ok).ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d", rec.Code, tc.want)
			}
			if tc.want == http.StatusUnauthorized {
				if got := rec.Header().Get("WWW-Authenticate"); got != `Bearer realm="test-admin"` {
					t.Errorf("WWW-Authenticate = %q", got)
				}
				if cc := rec.Header().Get("Cache-Control"); cc != "private, no-store" {
					t.Errorf("Cache-Control = %q", cc)
				}
				if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
					t.Errorf("Content-Type = %q", ct)
				}
			}
		})
	}
}
