package auth_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
)

// BenchmarkRequire is what bearer-token verification adds to a request:
// an RS256 signature check with a cached key, the claims' decoding and
// the policy (figures in docs/benchmarks.md).
func BenchmarkRequire(b *testing.B) {
	iss := authtest.NewIssuer(b)
	v, err := auth.NewVerifier(iss.Config("orders"), "orders", auth.Options{})
	if err != nil {
		b.Fatal(err)
	}
	h := v.Handle(auth.AnyOf(auth.RoleCustomer), http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	authz := "Bearer " + iss.Customer(b, "ada", "orders")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest(http.MethodGet, "/v1/orders/x", nil)
			r.Header.Set("Authorization", authz)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}
