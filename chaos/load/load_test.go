package load_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/chaos/load"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// tokens hands out "tok-<user>" and counts sign-ins; users in refuse fail.
type tokens struct {
	mu      sync.Mutex
	signIns map[string]int
	refuse  map[string]bool
}

func (s *tokens) Token(_ context.Context, user string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuse[user] {
		return "", errors.New("sign-in refused")
	}
	s.signIns[user]++
	return "tok-" + user, nil
}

var products = []catalogapi.Product{{ID: "p1", SKU: "S1"}, {ID: "p2", SKU: "S2"}}

func TestCustomerIDsCarryTheSyntheticPrefix(t *testing.T) {
	t.Parallel()
	id, email := load.Customer("a5f0ec", 3)
	if id != "load-chaos-a5f0ec-c3" || email != "load-chaos-a5f0ec-c3@example.com" {
		t.Fatalf("Customer = %q, %q", id, email)
	}
	if !strings.HasPrefix(id, load.CustomerPrefix) {
		t.Fatalf("%q lacks the synthetic prefix %q", id, load.CustomerPrefix)
	}
}

// TestRunSendsEachCustomersToken: every checkout carries the bearer token
// of the customer the body names, and every customer signed in before the
// first checkout. (Run asks the TokenSource for every order; caching is
// the source's job: target.System's.)
func TestRunSendsEachCustomersToken(t *testing.T) {
	t.Parallel()
	var bad atomic.Value
	ts := &tokens{signIns: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.mu.Lock()
		signedIn := len(ts.signIns)
		ts.mu.Unlock()
		if signedIn != 3 {
			bad.Store("a checkout before every customer signed in")
		}
		var in ordersapi.CreateOrder
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			bad.Store(err.Error())
		}
		if got, want := r.Header.Get("Authorization"), "Bearer tok-"+in.CustomerID; got != want || !strings.HasPrefix(in.CustomerID, load.CustomerPrefix) {
			bad.Store("customer " + in.CustomerID + " sent " + got)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(ordersapi.Order{ID: r.Header.Get("Idempotency-Key"), CustomerID: in.CustomerID})
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	res, err := load.Run(ctx, load.Config{OrdersURL: srv.URL, Tokens: ts, Rate: 40, RunID: "t1", Customers: 3, Products: products,
		HTTP: srv.Client()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b := bad.Load(); b != nil {
		t.Fatal(b)
	}
	if len(res.Accepted) == 0 || len(res.Refused) != 0 {
		t.Fatalf("accepted %d, refused %v", len(res.Accepted), res.Refused)
	}
}

// TestRunStopsWhenACustomerCannotSignIn: no order is placed.
func TestRunStopsWhenACustomerCannotSignIn(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(srv.Close)
	bad, _ := load.Customer("t2", 1)
	ts := &tokens{signIns: map[string]int{}, refuse: map[string]bool{bad: true}}
	_, err := load.Run(t.Context(), load.Config{OrdersURL: srv.URL, Tokens: ts, RunID: "t2", Customers: 3, Products: products, HTTP: srv.Client()}, nil)
	if err == nil || !strings.Contains(err.Error(), "1 of 3 customers could not sign in") {
		t.Fatalf("err %v, want a sign-in failure", err)
	}
	if n.Load() != 0 {
		t.Fatalf("%d checkouts sent after a failed sign-in", n.Load())
	}
}

// TestPlaceDoesNotRetryRefusals: 401 and 403 are final answers, sent
// once; 503 is retried with the same key.
func TestPlaceDoesNotRetryRefusals(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		var n atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			n.Add(1)
			w.WriteHeader(status)
		}))
		a, err := load.Place(t.Context(), srv.Client(), srv.URL, "tok", ordersapi.CreateOrder{}, "k")
		srv.Close()
		if err != nil || a.Status != status || n.Load() != 1 || len(a.Retries) != 0 {
			t.Errorf("%d: status %d, %d requests, retries %v, err %v; want one request, final", status, a.Status, n.Load(), a.Retries, err)
		}
	}
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":"o1"}`))
	}))
	t.Cleanup(srv.Close)
	a, err := load.Place(t.Context(), srv.Client(), srv.URL, "tok", ordersapi.CreateOrder{}, "k")
	if err != nil || a.Status != http.StatusCreated || a.Retries[http.StatusServiceUnavailable] != 1 {
		t.Fatalf("status %d, retries %v, err %v; want 201 after one retried 503", a.Status, a.Retries, err)
	}
}

// TestPlaceRecordsEveryAnswer: each attempt's answer is recorded with its
// status, its time and whether it carried Retry-After.
func TestPlaceRecordsEveryAnswer(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // no Retry-After: the client waits its default 1s
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":"o1"}`))
	}))
	t.Cleanup(srv.Close)
	start := time.Now()
	a, err := load.Place(t.Context(), srv.Client(), srv.URL, "tok", ordersapi.CreateOrder{}, "k")
	if err != nil || len(a.Answers) != 2 {
		t.Fatalf("answers %+v, err %v; want two", a.Answers, err)
	}
	first, second := a.Answers[0], a.Answers[1]
	if first.Status != http.StatusServiceUnavailable || first.RetryAfter || second.Status != http.StatusCreated ||
		first.At.Before(start) || second.At.Before(first.At) || first.Took <= 0 {
		t.Fatalf("answers %+v; want a 503 without Retry-After, then a 201, in order", a.Answers)
	}
	res := load.Result{Answers: a.Answers}
	if got := res.Latencies(http.StatusCreated, time.Time{}, time.Time{}); len(got) != 1 || got[0] != second.Took {
		t.Errorf("Latencies(201) = %v, want [%s]", got, second.Took)
	}
	if got := res.Latencies(http.StatusServiceUnavailable, second.At, time.Time{}); len(got) != 0 {
		t.Errorf("Latencies(503, from the 201 on) = %v, want none", got)
	}
}
