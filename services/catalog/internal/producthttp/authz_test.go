package producthttp_test

import (
	"net/http"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
)

// TestWhoMayCallEachRoute is catalog's authorization table (ADR 0022):
// route × caller → status. Public reads ignore credentials (the CDN
// caches them for everyone); products:batch is for services and
// operators; the admin API for operators. Unlisted callers (no token,
// forged, expired, misdirected, foreign) answer 401 where a token is
// needed.
func TestWhoMayCallEachRoute(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	p := b.create(t, lamp("LAMP-AUTHZ"))
	callers := b.iss.Callers(t, "catalog", "ada")
	all := func(code int) map[string]int {
		m := map[string]int{}
		for _, c := range authtest.CallerNames {
			m[c] = code
		}
		return m
	}
	needs := func(ok ...string) map[string]int {
		m := map[string]int{authtest.Owner: 403, authtest.OtherCustomer: 403, authtest.Operator: 403, authtest.Service: 403}
		for _, c := range ok {
			m[c] = 200
		}
		return m
	}
	for _, rt := range []struct {
		method, path string
		want         map[string]int
	}{
		{"GET", "/v1/products/" + p.ID, all(200)},
		{"GET", "/v1/products?limit=1", all(200)},
		{"GET", "/v1/products:batch?ids=" + p.ID, needs(authtest.Service, authtest.Operator)},
		{"GET", "/v1/admin/products/" + p.ID, needs(authtest.Operator)},
	} {
		for _, who := range authtest.CallerNames {
			want, ok := rt.want[who]
			if !ok {
				want = http.StatusUnauthorized
			}
			h := map[string]string{}
			if callers[who] != "" {
				h["Authorization"] = callers[who]
			}
			if r := b.do(t, rt.method, rt.path, nil, h); r.status != want {
				t.Errorf("%s %s as %s = %d, want %d: %s", rt.method, rt.path, who, r.status, want, r.body)
			}
		}
	}
}
