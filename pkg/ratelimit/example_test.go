package ratelimit_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/shopfloor/shopfloor/pkg/ratelimit"
)

// A per-client limit of 1 request a second with bursts of 2: the third
// request at once is refused with Retry-After and the RateLimit fields.
func Example() {
	l, err := ratelimit.New(ratelimit.Config{Policy: "anonymous", Limit: ratelimit.Limit{Rate: 1, Burst: 2}})
	if err != nil {
		panic(err)
	}
	h := l.Middleware("GET /v1/products", func(r *http.Request) string {
		if a, ok := ratelimit.ClientAddr(r, nil); ok {
			return ratelimit.AddrKey(a)
		}
		return ""
	})(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "products") }))
	for range 3 {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/v1/products", nil) // from 192.0.2.1
		h.ServeHTTP(w, r)
		fmt.Println(w.Code, w.Header().Get("Retry-After"), w.Header().Get("RateLimit-Policy"), w.Header().Get("RateLimit"))
	}
	// Output:
	// 200  "anonymous";q=2;w=2 "anonymous";r=1;t=1
	// 200  "anonymous";q=2;w=2 "anonymous";r=0;t=2
	// 429 1 "anonymous";q=2;w=2 "anonymous";r=0;t=1
}
