package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi/catalogtest"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

// TestRateLimitsAnswer429WithRetryAfterAndRecover runs the orders binary's
// api role with a small per-customer checkout limit (2 at once, then one
// every 5 s) and a small anonymous limit, and goes past each: the next
// request is answered 429 problem+json with Retry-After and the RateLimit
// fields, another customer is not affected, and the same caller is served
// again once the bucket refills (polled, never slept for).
func TestRateLimitsAnswer429WithRetryAfterAndRecover(t *testing.T) {
	t.Parallel()
	db := testinfra.Postgres(t, nil)
	iss := authtest.NewIssuer(t)
	iss.AddClient("orders", "orders-test-secret-0123456789")
	cat := catalogtest.StartWith(t, iss)
	mug := cat.Add(t, catalogtest.Product{SKU: "MUG-RL", Prices: map[string]int64{"EUR": 1500}})
	env := map[string]string{"DATABASE_URL": db.URL, "CATALOG_URL": cat.URL, "ROLES": "api", "LOG_LEVEL": "WARN",
		"AUTH_ISSUER": iss.URL, "AUTH_CLIENT_ID": "orders", "AUTH_CLIENT_SECRET": "orders-test-secret-0123456789",
		"CHECKOUT_RATE_LIMIT": "0.2", "CHECKOUT_RATE_LIMIT_BURST": "2",
		"RATE_LIMIT_ANONYMOUS": "0.2", "RATE_LIMIT_ANONYMOUS_BURST": "2"}
	if err := run(context.Background(), []string{"orders", "migrate"}, func(k string) string { return env[k] }, &testinfra.Buffer{}); err != nil {
		t.Fatal(err)
	}
	svc := testinfra.StartService(t, run, "orders", env)
	svc.WaitReady(30 * time.Second)

	key := 0
	checkout := func(customer string) *http.Response {
		t.Helper()
		key++
		body, _ := json.Marshal(ordersapi.CreateOrder{CustomerEmail: "rl@example.com", Currency: "EUR",
			Items:    []ordersapi.LineInput{{ProductID: mug.ID, Quantity: 1}},
			Shipping: ordersapi.Address{Name: "Rate Limit", Line1: "1 Way", City: "Town", PostalCode: "12345", Country: "US"}})
		req, _ := http.NewRequest(http.MethodPost, svc.Public+"/v1/orders", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("rl-%d", key))
		req.Header.Set("Authorization", "Bearer "+iss.Customer(t, customer, "orders"))
		return do(t, req)
	}
	openapi := func() *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, svc.Public+"/v1/openapi.yaml", nil)
		return do(t, req)
	}
	for _, tc := range []struct {
		name, policy string
		send         func() *http.Response
		other        func() *http.Response
	}{
		{"checkout per customer", "checkout", func() *http.Response { return checkout("cust-rl") }, func() *http.Response { return checkout("cust-other") }},
		{"anonymous per address", "anonymous", openapi, nil},
	} {
		for i := range 2 {
			if resp := tc.send(); resp.StatusCode >= 300 {
				t.Fatalf("%s: request %d within the burst: %d", tc.name, i+1, resp.StatusCode)
			}
		}
		resp := tc.send()
		checkRefusal(t, tc.name, tc.policy, resp)
		if tc.other != nil {
			if resp := tc.other(); resp.StatusCode != http.StatusCreated {
				t.Errorf("%s: another customer refused: %d", tc.name, resp.StatusCode)
			}
		}
		testinfra.Eventually(t, 30*time.Second, func() error {
			if resp := tc.send(); resp.StatusCode >= 300 {
				return fmt.Errorf("%s: still %d", tc.name, resp.StatusCode)
			}
			return nil
		})
	}
	resp, err := http.Get(svc.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`http_requests_rate_limited_total{policy="checkout",route="POST /v1/orders"}`,
		`http_requests_rate_limited_total{policy="anonymous",route="/v1/"}`, `ratelimit_keys{policy="principal"}`} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
}

// checkRefusal checks a 429 of policy: problem+json, Retry-After in whole
// seconds within the refill time of one token (5 s), and the policy's
// RateLimit fields with nothing left.
func checkRefusal(t *testing.T, name, policy string, resp *http.Response) {
	t.Helper()
	var p httpkit.Problem
	_ = json.NewDecoder(resp.Body).Decode(&p)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Content-Type") != httpkit.ContentTypeProblem ||
		p.Type != httpkit.ProblemBase+"rate-limited" {
		t.Fatalf("%s: past the burst: %d %s %+v, want 429 rate-limited", name, resp.StatusCode, resp.Header.Get("Content-Type"), p)
	}
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 5 {
		t.Errorf("%s: Retry-After %q, want 1..5 seconds", name, resp.Header.Get("Retry-After"))
	}
	if want := fmt.Sprintf(`"%s";q=2;w=10`, policy); !slices.Contains(resp.Header.Values("RateLimit-Policy"), want) {
		t.Errorf("%s: RateLimit-Policy %q, want %s among them", name, resp.Header.Values("RateLimit-Policy"), want)
	}
	if want := fmt.Sprintf(`"%s";r=0;t=%d`, policy, ra); !slices.Contains(resp.Header.Values("RateLimit"), want) {
		t.Errorf("%s: RateLimit %q, want %s among them", name, resp.Header.Values("RateLimit"), want)
	}
}

func do(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp
}
