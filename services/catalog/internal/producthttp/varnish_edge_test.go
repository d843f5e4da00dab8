package producthttp_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestVarnishNeverForwardsAdminOrMetrics: deploy/compose/varnish/default.vcl
// answers 404 itself for the admin API and /metrics, however the path is
// spelled, without calling the origin, in front of an origin that would
// answer them (ADR 0023). Requests are written raw so that every spelling
// reaches Varnish byte for byte.
func TestVarnishNeverForwardsAdminOrMetrics(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	var last atomic.Value
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		last.Store(r.RequestURI)
		w.Header().Set("Cache-Control", "private, no-store")
		_, _ = io.WriteString(w, "origin answered "+r.RequestURI)
	}))
	t.Cleanup(origin.Close)
	u, err := url.Parse(origin.URL)
	if err != nil {
		t.Fatal(err)
	}
	cdn := strings.TrimPrefix(varnish(t, u.Host), "http://")

	// The control: an ordinary path reaches the origin.
	if st, body := raw(t, cdn, "GET", "/v1/products/p-1", ""); st != http.StatusOK || !strings.Contains(body, "origin answered") {
		t.Fatalf("GET /v1/products/p-1 = %d %s; the origin should answer", st, body)
	}
	before := hits.Load()
	for _, tc := range []struct{ method, target, header string }{
		{"GET", "/v1/admin/products/x", ""},
		{"GET", "/v1/admin", ""},
		{"GET", "/v1/admin/", ""},
		{"POST", "/v1/admin/products", ""},
		{"PUT", "/v1/admin/cache/bypass", ""},
		{"GET", "/v1/admin/products/x", "Authorization: Bearer local-admin-token-change-me"},
		{"GET", "/v1/admin/queues?utm_source=x", ""},
		{"GET", "/metrics", ""},
		{"GET", "/metrics?name[]=up", ""},
		{"HEAD", "/metrics", ""},
		{"GET", "/Metrics", ""},
		{"GET", "//metrics", ""},
		{"GET", "/%6detrics", ""},
		{"GET", "//v1/admin/products/x", ""},
		{"GET", "/v1//admin/products/x", ""},
		{"GET", "/V1/ADMIN/products/x", ""},
		{"GET", "/v1/Admin/products/x", ""},
		{"GET", "/v1%2Fadmin/products/x", ""},
		{"GET", "/v1%2fadmin/products/x", ""},
		{"GET", "/%2Fv1/admin/products/x", ""},
		{"GET", "/v1/%61dmin/products/x", ""},
		{"GET", "/v1/%41DMIN/products/x", ""},
		{"GET", "/v1/admin/%zz", ""},
		{"GET", "/v1\\admin/products/x", ""},
		{"GET", "/v1/%5Cadmin/products/x", ""},
		{"GET", "/v1/./admin/products/x", ""},
		{"GET", "/./metrics", ""},
		{"GET", "/v1/products/../admin/products/x", ""},
		{"GET", "/v1/products/..%2Fadmin/products/x", ""},
		{"GET", "/v1/a/b/../../admin/products/x", ""},
		{"GET", "/../v1/admin/products/x", ""},
		{"GET", "http://cdn.example/v1/admin/products/x", ""},
	} {
		st, body := raw(t, cdn, tc.method, tc.target, tc.header)
		if st != http.StatusNotFound {
			t.Errorf("%s %s (%s) = %d %s, want 404", tc.method, tc.target, tc.header, st, body)
		}
		if n := hits.Load(); n != before {
			t.Errorf("%s %s reached the origin as %v", tc.method, tc.target, last.Load())
			before = n
		}
	}
	if st, body := raw(t, cdn, "GET", "/v1/admin/products/x", ""); !strings.Contains(body, "problems/not-found") {
		t.Errorf("the 404 is not a problem document: %d %s", st, body)
	}
}

// raw sends one request with target written as is and returns the status
// and body.
func raw(t *testing.T, addr, method, target, header string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: cdn.example\r\nConnection: close\r\n", method, target)
	if header != "" {
		req += header + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
