package orderhttp_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

// TestWhoMayCallEachRoute is the authorization table (ADR 0022): every
// route × every kind of caller → the status. The owner is cust-42; each
// row works on an order of its own, so rows cannot disturb each other.
// Rows that are not listed answer 401 (no token, or a token that is
// forged, expired, for another audience or from another issuer).
func TestWhoMayCallEachRoute(t *testing.T) {
	t.Parallel()
	b := setup(t)
	type route struct {
		name string
		do   func(t *testing.T, authz, orderID string) resp
		want map[string]int
	}
	as := func(authz string, extra map[string]string) map[string]string {
		h := map[string]string{"Authorization": authz}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	n := 0
	fresh := func() string { n++; return fmt.Sprintf("authz-%d", n) }
	routes := []route{
		{"place", func(t *testing.T, authz, _ string) resp {
			return b.do(t, "POST", "/v1/orders", b.order(), as(authz, key(fresh())))
		}, map[string]int{authtest.Owner: 201, authtest.OtherCustomer: 403, authtest.Operator: 403, authtest.Service: 403}},
		{"get", func(t *testing.T, authz, id string) resp {
			return b.do(t, "GET", "/v1/orders/"+id, nil, as(authz, nil))
		}, map[string]int{authtest.Owner: 200, authtest.OtherCustomer: 404, authtest.Operator: 200, authtest.Service: 403}},
		{"events", func(t *testing.T, authz, id string) resp {
			return b.do(t, "GET", "/v1/orders/"+id+"/events", nil, as(authz, nil))
		}, map[string]int{authtest.Owner: 200, authtest.OtherCustomer: 404, authtest.Operator: 200, authtest.Service: 403}},
		{"list", func(t *testing.T, authz, _ string) resp {
			return b.do(t, "GET", "/v1/orders?customer_id=cust-42", nil, as(authz, nil))
		}, map[string]int{authtest.Owner: 200, authtest.OtherCustomer: 403, authtest.Operator: 200, authtest.Service: 403}},
		{"cancel", func(t *testing.T, authz, id string) resp {
			return b.do(t, "POST", "/v1/orders/"+id+"/cancel", nil, as(authz, key(fresh())))
		}, map[string]int{authtest.Owner: 200, authtest.OtherCustomer: 404, authtest.Operator: 200, authtest.Service: 403}},
	}
	for _, rt := range routes {
		for _, who := range authtest.CallerNames {
			want, ok := rt.want[who]
			if !ok {
				want = http.StatusUnauthorized
			}
			id := b.place(t, fresh()).ID
			r := rt.do(t, b.callers[who], id)
			if r.status != want {
				t.Errorf("%s as %s = %d, want %d: %s", rt.name, who, r.status, want, r.body)
			}
		}
	}
	// What the other customer got was not the owner's data, and the
	// orders they could not cancel are still pending.
	for _, o := range b.list(t, "cust-42") {
		if o.CustomerID != "cust-42" {
			t.Fatalf("order %s of %s in cust-42's list", o.ID, o.CustomerID)
		}
	}
}

func (b *bundle) list(t *testing.T, customer string) []ordersapi.Order {
	t.Helper()
	var all []ordersapi.Order
	token := ""
	for {
		r := b.do(t, "GET", "/v1/orders?limit=100&customer_id="+customer+"&page_token="+token, nil, map[string]string{"Authorization": b.callers[authtest.Operator]})
		if r.status != http.StatusOK {
			t.Fatalf("list = %d %s", r.status, r.body)
		}
		l := decode[ordersapi.OrderList](t, r)
		all = append(all, l.Orders...)
		if token = l.NextPageToken; token == "" {
			return all
		}
	}
}
