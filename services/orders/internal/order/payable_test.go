package order_test

import (
	"errors"
	"testing"

	"github.com/shopfloor/shopfloor/services/orders/internal/order"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// TestPaymentMatchesOnlyTheExactTotalInItsCurrency: a payment matches only the order's exact total in
// its currency; the currency is compared first.
func TestPaymentMatchesOnlyTheExactTotalInItsCurrency(t *testing.T) {
	t.Parallel()
	o := order.Order{Currency: "EUR", TotalMinor: 1000}
	for _, tc := range []struct {
		amount   int64
		currency string
		want     string
	}{
		{1000, "EUR", ""},
		{999, "EUR", ordersapi.ReasonAmountMismatch},
		{1001, "EUR", ordersapi.ReasonAmountMismatch},
		{1000, "USD", ordersapi.ReasonCurrencyMismatch},
		{5, "GBP", ordersapi.ReasonCurrencyMismatch},
		{1000, "", ordersapi.ReasonCurrencyMismatch},
	} {
		if got := o.PaymentMismatch(tc.amount, tc.currency); got != tc.want {
			t.Errorf("PaymentMismatch(%d, %q) = %q, want %q", tc.amount, tc.currency, got, tc.want)
		}
	}
}

// TestCheckPayableRefusesWhatPaymentsRefuses: orders refuses what payments' limits (paymentsapi)
// refuse, and accepts the same currencies.
func TestCheckPayableRefusesWhatPaymentsRefuses(t *testing.T) {
	t.Parallel()
	maxEUR, _ := paymentsapi.MaxAmountMinor("EUR")
	if err := order.CheckPayable("EUR", maxEUR); err != nil {
		t.Fatalf("at the maximum: %v", err)
	}
	for _, tc := range []struct {
		currency string
		total    int64
		pointer  string
	}{
		{"EUR", maxEUR + 1, "/items"},
		{"EUR", 0, "/items"},
		{"JPY", 100, "/currency"},
	} {
		var pe *order.PaymentLimitError
		if err := order.CheckPayable(tc.currency, tc.total); !errors.As(err, &pe) || pe.Pointer() != tc.pointer || pe.Detail() == "" {
			t.Errorf("CheckPayable(%s, %d) = %v, want a *PaymentLimitError at %s", tc.currency, tc.total, err, tc.pointer)
		}
	}
	for _, c := range paymentsapi.Currencies() {
		if err := order.ValidateCreate(ordersapi.CreateOrder{Currency: c}); err != nil {
			var ve *order.ValidationError
			if errors.As(err, &ve) {
				for _, f := range ve.Fields {
					if f.Pointer == "/currency" {
						t.Errorf("orders refuses %s, which payments takes", c)
					}
				}
			}
		}
	}
}
