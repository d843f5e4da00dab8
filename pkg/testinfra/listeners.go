package testinfra

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// CheckListeners checks a ready service's two listeners (ADR 0023), given
// their base URLs: the public one answers /healthz, a /readyz without
// details ({"status":"ready"} only), and 404 for /metrics, /v1/admin/
// and every adminPath; the admin one answers /healthz, /readyz with its checks,
// /metrics in the Prometheus text format, and each adminPath with
// something other than 404 (a 401 without the admin token is enough: the
// route is there).
func CheckListeners(tb testing.TB, public, admin string, adminPaths ...string) {
	tb.Helper()
	get := func(u string) (int, string) {
		tb.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			tb.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			tb.Fatalf("GET %s: %v", u, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	expect := func(u string, ok func(int, string) bool, want string) {
		tb.Helper()
		if st, body := get(u); !ok(st, body) {
			tb.Errorf("GET %s = %d %.300s; want %s", u, st, body, want)
		}
	}
	is := func(code int) func(int, string) bool { return func(st int, _ string) bool { return st == code } }
	expect(public+"/healthz", is(http.StatusOK), "200")
	expect(public+"/readyz", func(st int, body string) bool {
		return st == http.StatusOK && strings.TrimSpace(body) == `{"status":"ready"}`
	}, `200 {"status":"ready"} and nothing more`)
	expect(public+"/metrics", is(http.StatusNotFound), "404: metrics are on the admin listener")
	expect(admin+"/healthz", is(http.StatusOK), "200")
	expect(admin+"/readyz", func(st int, body string) bool {
		return st == http.StatusOK && strings.Contains(body, `"checks":{`)
	}, "200 with the checks")
	expect(admin+"/metrics", func(st int, body string) bool {
		return st == http.StatusOK && strings.Contains(body, "# TYPE ")
	}, "200 with metrics")
	expect(public+"/v1/admin/", is(http.StatusNotFound), "404: the admin API is on the admin listener")
	for _, p := range adminPaths {
		expect(public+p, is(http.StatusNotFound), "404: the admin API is on the admin listener")
		expect(admin+p, func(st int, _ string) bool { return st != http.StatusNotFound }, "the admin route (not 404)")
	}
}
