package orderhttp_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi/catalogtest"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// TestCheckoutOutsidePaymentLimits: an order payments could not charge
// (its total above payments' largest payment in its currency, the limit
// declared in paymentsapi) is refused at checkout with a 422 that says
// why, and nothing is written: no order, no line, no order.placed in the
// outbox. At the limit it is accepted.
func TestCheckoutOutsidePaymentLimits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	maxEUR, ok := paymentsapi.MaxAmountMinor("EUR")
	if !ok {
		t.Fatal("payments takes no EUR")
	}
	// Two of them cost one minor unit more than payments takes; half of
	// the limit exactly is the largest order that is accepted.
	dear := b.catalog.Add(t, catalogtest.Product{SKU: "GOLD-BAR", Prices: map[string]int64{"EUR": maxEUR/2 + 1}})
	exact := b.catalog.Add(t, catalogtest.Product{SKU: "SILVER-BAR", Prices: map[string]int64{"EUR": maxEUR / 2}})
	over := b.order()
	over.Items = []ordersapi.LineInput{{ProductID: dear.ID, Quantity: 2}}

	r := b.do(t, "POST", "/v1/orders", over, key("k-over"))
	if r.status != http.StatusUnprocessableEntity || r.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("over the limit = %d %s %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	p := decode[*httpkit.Problem](t, r)
	if p.Class() != "not-payable" || len(p.Errors) != 1 || p.Errors[0].Pointer != "#/items" ||
		!strings.Contains(p.Detail, strconv.FormatInt(maxEUR+2, 10)) || !strings.Contains(p.Detail, strconv.FormatInt(maxEUR, 10)) {
		t.Fatalf("problem %+v: want not-payable at #/items naming the total and the limit", p)
	}
	if c := b.counts(t); c != [4]int{} {
		t.Fatalf("a refused order wrote rows (orders, lines, outbox, keys) = %v", c)
	}

	at := b.order()
	at.Items = []ordersapi.LineInput{{SKU: exact.SKU, Quantity: 2}}
	r = b.do(t, "POST", "/v1/orders", at, key("k-at"))
	if r.status != http.StatusCreated || decode[ordersapi.Order](t, r).TotalMinor != maxEUR {
		t.Fatalf("at the limit = %d %s", r.status, r.body)
	}
}
