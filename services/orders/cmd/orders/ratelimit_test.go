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
	checkout := func(customer string) answer {
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
	openapi := func() answer {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, svc.Public+"/v1/openapi.yaml", nil)
		return do(t, req)
	}
	// A first checkout meets cold paths (the pool's first connections,
	// catalog's first answer, the token keys): on a loaded machine it can
	// be refused with 503 + Retry-After, as a client would be. Warm them
	// with another customer, retried as a client does, so that the
	// buckets below see only the requests they count.
	testinfra.Eventually(t, 30*time.Second, func() error {
		if a := checkout("cust-warm"); a.status != http.StatusCreated {
			return fmt.Errorf("warm-up checkout: %d %s", a.status, a.body)
		}
		return nil
	})
	for _, tc := range []struct {
		name, policy string
		send         func() answer
		other        func() answer
	}{
		{"checkout per customer", "checkout", func() answer { return checkout("cust-rl") }, func() answer { return checkout("cust-other") }},
		{"anonymous per address", "anonymous", openapi, nil},
	} {
		for i := range 2 {
			if resp := tc.send(); resp.status >= 300 {
				t.Fatalf("%s: request %d within the burst: %d %s", tc.name, i+1, resp.status, resp.body)
			}
		}
		resp := tc.send()
		checkRefusal(t, tc.name, tc.policy, resp)
		if tc.other != nil {
			if resp := tc.other(); resp.status != http.StatusCreated {
				t.Errorf("%s: another customer refused: %d", tc.name, resp.status)
			}
		}
		testinfra.Eventually(t, 30*time.Second, func() error {
			if resp := tc.send(); resp.status >= 300 {
				return fmt.Errorf("%s: still %d", tc.name, resp.status)
			}
			return nil
		})
	}
	req, _ := http.NewRequest(http.MethodGet, svc.Admin+"/metrics", nil)
	metrics := do(t, req).body
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
func checkRefusal(t *testing.T, name, policy string, resp answer) {
	t.Helper()
	var p httpkit.Problem
	_ = json.Unmarshal(resp.body, &p)
	if resp.status != http.StatusTooManyRequests || resp.header.Get("Content-Type") != httpkit.ContentTypeProblem ||
		p.Type != httpkit.ProblemBase+"rate-limited" {
		t.Fatalf("%s: past the burst: %d %s %+v, want 429 rate-limited", name, resp.status, resp.header.Get("Content-Type"), p)
	}
	ra, err := strconv.Atoi(resp.header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 5 {
		t.Errorf("%s: Retry-After %q, want 1..5 seconds", name, resp.header.Get("Retry-After"))
	}
	if want := fmt.Sprintf(`"%s";q=2;w=10`, policy); !slices.Contains(resp.header.Values("RateLimit-Policy"), want) {
		t.Errorf("%s: RateLimit-Policy %q, want %s among them", name, resp.header.Values("RateLimit-Policy"), want)
	}
	if want := fmt.Sprintf(`"%s";r=0;t=%d`, policy, ra); !slices.Contains(resp.header.Values("RateLimit"), want) {
		t.Errorf("%s: RateLimit %q, want %s among them", name, resp.header.Values("RateLimit"), want)
	}
}

// answer is a response, read.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}
