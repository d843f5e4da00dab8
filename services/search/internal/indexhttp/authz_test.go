package indexhttp_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/search/internal/searchtest"
	"github.com/shopfloor/shopfloor/services/search/searchapi"
)

// TestWhoMaySearch is the authorization table (ADR 0022): route × caller
// → status, and what a customer's 200 contains. c1 owns order a, c1-other
// (authtest's "other customer") owns order b.
func TestWhoMaySearch(t *testing.T) {
	t.Parallel()
	s := searchtest.Start(t, 1)
	a, b := searchtest.NewID(), searchtest.NewID()
	mk := func(id, customer string) searchtest.Event {
		ev, err := searchtest.Envelope(ordersapi.Source, ordersapi.EventOrderPlaced, id, 1, ordersapi.OrderPlaced{OrderID: id, CustomerID: customer,
			CustomerEmail: customer + "@example.com", Currency: "EUR", TotalMinor: 100,
			Items: []ordersapi.Line{{ProductID: "p1", SKU: "LAMP-1", Name: "Oak lamp", Quantity: 1, UnitPriceMinor: 100}}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	s.Publish(t, s.Orders.Stream, []searchtest.Event{mk(a, "c1"), mk(b, "c1-other")})
	s.WaitCaughtUp(t, s.Orders)
	callers := s.Issuer.Callers(t, "search", "c1")
	routes := []struct {
		path string
		want map[string]int // unlisted callers: 401
		// seen are the orders each caller with a 200 gets.
		seen map[string][]string
	}{
		{"/v1/search/orders?customer_id=c1", map[string]int{authtest.Owner: 200, authtest.OtherCustomer: 403, authtest.Operator: 200, authtest.Service: 403},
			map[string][]string{authtest.Owner: {a}, authtest.Operator: {a}}},
		{"/v1/search/orders?q=oak+lamp", map[string]int{authtest.Owner: 200, authtest.OtherCustomer: 200, authtest.Operator: 200, authtest.Service: 403},
			map[string][]string{authtest.Owner: {a}, authtest.OtherCustomer: {b}, authtest.Operator: {a, b}}},
	}
	for _, rt := range routes {
		for _, who := range authtest.CallerNames {
			want, ok := rt.want[who]
			if !ok {
				want = http.StatusUnauthorized
			}
			ans := s.GetAs(t, rt.path, callers[who])
			if ans.Status != want {
				t.Errorf("%s as %s = %d, want %d: %s", rt.path, who, ans.Status, want, ans.Body)
				continue
			}
			if want != http.StatusOK {
				continue
			}
			var got []string
			for _, o := range searchtest.Decode[searchapi.OrderResults](t, ans).Orders {
				got = append(got, o.ID)
			}
			slices.Sort(got)
			wantIDs := slices.Clone(rt.seen[who])
			slices.Sort(wantIDs)
			if !slices.Equal(got, wantIDs) {
				t.Errorf("%s as %s saw %v, want %v", rt.path, who, got, wantIDs)
			}
		}
	}
	// Product search is public catalog data: anyone, no token needed.
	if ans := s.GetAs(t, "/v1/search/products?q=lamp", ""); ans.Status != http.StatusOK {
		t.Errorf("anonymous product search = %d", ans.Status)
	}
}
