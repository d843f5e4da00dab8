package order_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/services/orders/internal/order"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

// TestStateMachineTable checks every (from, to) pair against the design's
// table: pending_payment → paid | payment_failed | cancelled,
// payment_failed → cancelled, nothing else.
func TestStateMachineTable(t *testing.T) {
	t.Parallel()
	allowed := map[[2]order.Status]bool{
		{order.PendingPayment, order.Paid}:          true,
		{order.PendingPayment, order.PaymentFailed}: true,
		{order.PendingPayment, order.Cancelled}:     true,
		{order.PaymentFailed, order.Cancelled}:      true,
	}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for _, from := range order.Statuses() {
		for _, to := range order.Statuses() {
			t.Run(string(from)+"→"+string(to), func(t *testing.T) {
				t.Parallel()
				o := order.Order{ID: "o1", Status: from, Version: 4}
				next, err := o.Transition(to, now)
				if allowed[[2]order.Status{from, to}] {
					if err != nil || next.Status != to || next.Version != 5 || !next.UpdatedAt.Equal(now) {
						t.Fatalf("allowed transition: %+v, %v", next, err)
					}
					if o.Status != from || o.Version != 4 {
						t.Fatal("Transition modified its receiver")
					}
					return
				}
				var te *order.TransitionError
				if !errors.As(err, &te) || te.From != from || te.To != to || te.Version != 4 {
					t.Fatalf("forbidden transition: err = %v", err)
				}
				if next.Status != from || next.Version != 4 {
					t.Fatalf("a refused transition changed the order: %+v", next)
				}
			})
		}
	}
	if order.Status("shipped").Valid() || !order.Paid.Valid() {
		t.Error("Valid")
	}
}

func TestTotalSumsTheLinesAndRefusesOverflow(t *testing.T) {
	t.Parallel()
	got, err := order.Total([]order.Line{{Quantity: 3, UnitPriceMinor: 1999}, {Quantity: 1, UnitPriceMinor: 1}})
	if err != nil || got != 5998 {
		t.Fatalf("Total = %d, %v", got, err)
	}
	if _, err := order.Total([]order.Line{{Quantity: 100, UnitPriceMinor: math.MaxInt64 / 50}}); err == nil {
		t.Error("overflowing line accepted")
	}
	if _, err := order.Total([]order.Line{{Quantity: 1, UnitPriceMinor: math.MaxInt64}, {Quantity: 1, UnitPriceMinor: 1}}); err == nil {
		t.Error("overflowing total accepted")
	}
}

func valid() ordersapi.CreateOrder {
	return ordersapi.CreateOrder{
		CustomerID: "cust-1", CustomerEmail: "ada@example.com", Currency: "EUR",
		Items: []ordersapi.LineInput{
			{ProductID: "0192f5d2-8c1e-7000-8000-000000000001", Quantity: 2},
			{SKU: "SKU-0001", Quantity: 1},
		},
		Shipping: ordersapi.Address{Name: "Ada Lovelace", Line1: "1 Main St", City: "Berlin", PostalCode: "10115", Country: "DE"},
	}
}

// TestValidateCreateNamesTheFieldEachRuleRefuses: one case per rule; each must be reported with the
// JSON pointer of the offending field, and the valid request passes.
func TestValidateCreateNamesTheFieldEachRuleRefuses(t *testing.T) {
	t.Parallel()
	if err := order.ValidateCreate(valid()); err != nil {
		t.Fatalf("valid request rejected: %v", err)
	}
	many := make([]ordersapi.LineInput, order.MaxLines+1)
	for i := range many {
		many[i] = ordersapi.LineInput{SKU: "SKU-" + strings.Repeat("1", 3) + string(rune('A'+i%26)) + string(rune('A'+i/26)), Quantity: 1}
	}
	cases := []struct {
		name    string
		mutate  func(*ordersapi.CreateOrder)
		pointer string
	}{
		{"no customer", func(o *ordersapi.CreateOrder) { o.CustomerID = "" }, "/customer_id"},
		{"customer id with spaces", func(o *ordersapi.CreateOrder) { o.CustomerID = "a b" }, "/customer_id"},
		{"customer id too long", func(o *ordersapi.CreateOrder) { o.CustomerID = strings.Repeat("a", 65) }, "/customer_id"},
		{"no email", func(o *ordersapi.CreateOrder) { o.CustomerEmail = "" }, "/customer_email"},
		{"bad email", func(o *ordersapi.CreateOrder) { o.CustomerEmail = "ada" }, "/customer_email"},
		{"email with display name", func(o *ordersapi.CreateOrder) { o.CustomerEmail = "Ada <ada@example.com>" }, "/customer_email"},
		{"unknown currency", func(o *ordersapi.CreateOrder) { o.Currency = "JPY" }, "/currency"},
		{"lower-case currency", func(o *ordersapi.CreateOrder) { o.Currency = "eur" }, "/currency"},
		{"no items", func(o *ordersapi.CreateOrder) { o.Items = nil }, "/items"},
		{"too many items", func(o *ordersapi.CreateOrder) { o.Items = many }, "/items"},
		{"quantity 0", func(o *ordersapi.CreateOrder) { o.Items[0].Quantity = 0 }, "/items/0/quantity"},
		{"quantity 101", func(o *ordersapi.CreateOrder) { o.Items[1].Quantity = 101 }, "/items/1/quantity"},
		{"negative quantity", func(o *ordersapi.CreateOrder) { o.Items[0].Quantity = -1 }, "/items/0/quantity"},
		{"neither id nor sku", func(o *ordersapi.CreateOrder) { o.Items[0].ProductID = "" }, "/items/0"},
		{"both id and sku", func(o *ordersapi.CreateOrder) { o.Items[0].SKU = "SKU-0002" }, "/items/0"},
		{"bad product id", func(o *ordersapi.CreateOrder) { o.Items[0].ProductID = "42" }, "/items/0/product_id"},
		{"bad sku", func(o *ordersapi.CreateOrder) { o.Items[1].SKU = "sku 1" }, "/items/1/sku"},
		{"duplicate line", func(o *ordersapi.CreateOrder) {
			o.Items[1] = ordersapi.LineInput{ProductID: o.Items[0].ProductID, Quantity: 1}
		}, "/items/1"},
		{"no name", func(o *ordersapi.CreateOrder) { o.Shipping.Name = " " }, "/shipping_address/name"},
		{"no line1", func(o *ordersapi.CreateOrder) { o.Shipping.Line1 = "" }, "/shipping_address/line1"},
		{"line2 too long", func(o *ordersapi.CreateOrder) { o.Shipping.Line2 = strings.Repeat("x", 201) }, "/shipping_address/line2"},
		{"no city", func(o *ordersapi.CreateOrder) { o.Shipping.City = "" }, "/shipping_address/city"},
		{"control character", func(o *ordersapi.CreateOrder) { o.Shipping.City = "Ber\x00lin" }, "/shipping_address/city"},
		{"no postal code", func(o *ordersapi.CreateOrder) { o.Shipping.PostalCode = "" }, "/shipping_address/postal_code"},
		{"postal code too long", func(o *ordersapi.CreateOrder) { o.Shipping.PostalCode = strings.Repeat("1", 21) }, "/shipping_address/postal_code"},
		{"bad country", func(o *ordersapi.CreateOrder) { o.Shipping.Country = "Germany" }, "/shipping_address/country"},
		{"card number as payment method", func(o *ordersapi.CreateOrder) { o.PaymentMethod = "4242424242424242" }, "/payment_method"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := valid()
			in.Items = append([]ordersapi.LineInput(nil), in.Items...)
			tc.mutate(&in)
			err := order.ValidateCreate(in)
			var ve *order.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("accepted: %v", err)
			}
			if len(ve.Fields) != 1 || ve.Fields[0].Pointer != tc.pointer {
				t.Fatalf("fields = %+v, want exactly %s", ve.Fields, tc.pointer)
			}
		})
	}
}
