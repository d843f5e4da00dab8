package service_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
	"github.com/shopfloor/shopfloor/pkg/ratelimit"
	"github.com/shopfloor/shopfloor/pkg/service"
)

// TestThePublicAPILimitsEachCallerInItsOwnBucket: a verified principal
// is limited by its subject, a service client by the service limit, and
// everyone else (no token, or a token that is not valid) by client
// address, which behind a trusted proxy is the one the proxy saw. The
// rates are so slow that no token comes back during the test.
func TestThePublicAPILimitsEachCallerInItsOwnBucket(t *testing.T) {
	t.Parallel()
	iss := authtest.NewIssuer(t)
	v, err := auth.NewVerifier(iss.Config("demo"), "demo", auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	limits, err := service.NewLimits(service.RateLimit{Principal: 0.001, PrincipalBurst: 2, Service: 0.001, ServiceBurst: 3,
		Anonymous: 0.001, AnonymousBurst: 1, TrustedProxies: []string{"10.0.0.0/8"}, MaxKeys: 100}, v, prometheus.NewPedanticRegistry())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	var forwarded string // what a handler passes on to the services it calls
	mux.HandleFunc("GET /v1/things", func(_ http.ResponseWriter, r *http.Request) { forwarded = ratelimit.ForwardedFor(r.Context()) })
	var pattern string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limits.Handler("/v1/", mux).ServeHTTP(w, r)
		pattern = r.Pattern // what the access log and the trace see
	})
	ada, grace := "Bearer "+iss.Customer(t, "ada", "demo"), "Bearer "+iss.Customer(t, "grace", "demo")
	svc := "Bearer " + iss.Service(t, "orders", "demo")
	codes := func(n int, from, authz string, xff ...string) string {
		var out []string
		for range n {
			r := httptest.NewRequest(http.MethodGet, "/v1/things", nil)
			r.RemoteAddr = from + ":40000"
			if authz != "" {
				r.Header.Set("Authorization", authz)
			}
			for _, x := range xff {
				r.Header.Add("X-Forwarded-For", x)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			out = append(out, http.StatusText(w.Code))
			if w.Code == http.StatusTooManyRequests && (w.Header().Get("Retry-After") == "" || w.Header().Get("RateLimit") == "") {
				t.Errorf("429 without Retry-After or RateLimit: %v", w.Header())
			}
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct{ name, got, want string }{
		{"ada", codes(3, "192.0.2.1", ada), "OK,OK,Too Many Requests"},
		{"grace, same address", codes(1, "192.0.2.1", grace), "OK"},
		{"a service client", codes(4, "192.0.2.1", svc), "OK,OK,OK,Too Many Requests"},
		{"anonymous, same address as ada", codes(2, "192.0.2.1", ""), "OK,Too Many Requests"},
		{"anonymous, another address", codes(1, "192.0.2.2", ""), "OK"},
		{"an invalid token counts as its address", codes(2, "192.0.2.3", "Bearer junk"), "OK,Too Many Requests"},
		{"behind a trusted proxy", codes(1, "10.0.0.7", "", "192.0.2.4"), "OK"},
		{"the same client through another proxy", codes(1, "10.0.0.8", "", "192.0.2.4"), "Too Many Requests"},
		{"a forged X-Forwarded-For from an untrusted peer", codes(1, "192.0.2.2", "", "192.0.2.9"), "Too Many Requests"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, tc.got, tc.want)
		}
	}
	codes(1, "192.0.2.5", grace)
	if pattern != "GET /v1/things" {
		t.Errorf("route seen outside the limit: %q, want the mux's pattern", pattern)
	}
	pattern = ""
	if codes(1, "10.0.0.9", "", "198.51.100.7"); forwarded != "198.51.100.7" || pattern != "GET /v1/things" {
		t.Errorf("anonymous behind a proxy: the handler passes on %q (want 198.51.100.7), route %q", forwarded, pattern)
	}
}

func TestServeRejectsBadRateLimits(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://x", "ROLES": "api", "AUTH_ISSUER": "http://127.0.0.1:1",
		"RATE_LIMIT_PRINCIPAL": "-1", "RATE_LIMIT_ANONYMOUS_BURST": "0", "RATE_LIMIT_TRUSTED_PROXIES": "10.0.0.0/8,varnish",
		"RATE_LIMIT_MAX_KEYS": "0", "RATE_LIMIT_SERVICE": "fast"}
	err := demoProgram(nil).Run(context.Background(), []string{"demo"}, func(k string) string { return env[k] }, io.Discard)
	for _, want := range []string{"RATE_LIMIT_PRINCIPAL: must be positive, or 0", "RATE_LIMIT_ANONYMOUS_BURST: must be at least 1",
		`RATE_LIMIT_TRUSTED_PROXIES: "varnish" is neither`, "RATE_LIMIT_MAX_KEYS: must be at least 1", "RATE_LIMIT_SERVICE"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
