package paymentsapi_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

func TestCheckAmountRefusesUnknownCurrenciesAndAmountsOutsideTheLimits(t *testing.T) {
	t.Parallel()
	if got := paymentsapi.Currencies(); !slices.Equal(got, []string{"EUR", "GBP", "USD"}) {
		t.Fatalf("Currencies() = %v", got)
	}
	maxEUR, ok := paymentsapi.MaxAmountMinor("EUR")
	if !ok || maxEUR != 100_000_000 {
		t.Fatalf("MaxAmountMinor(EUR) = %d, %v", maxEUR, ok)
	}
	if _, ok := paymentsapi.MaxAmountMinor("JPY"); ok {
		t.Fatal("JPY has a maximum")
	}
	cases := []struct {
		amount   int64
		currency string
		reason   string // "" for nil
		limit    int64
	}{
		{1, "EUR", "", 0},
		{maxEUR, "EUR", "", 0},
		{maxEUR + 1, "EUR", paymentsapi.LimitAboveMax, maxEUR},
		{0, "USD", paymentsapi.LimitBelowMin, paymentsapi.MinAmountMinor},
		{-5, "GBP", paymentsapi.LimitBelowMin, paymentsapi.MinAmountMinor},
		{100, "JPY", paymentsapi.LimitCurrency, 0},
		{0, "", paymentsapi.LimitCurrency, 0}, // the currency first
		{100, "eur", paymentsapi.LimitCurrency, 0},
	}
	for _, tc := range cases {
		err := paymentsapi.CheckAmount(tc.amount, tc.currency)
		var le *paymentsapi.LimitError
		switch {
		case tc.reason == "" && err != nil:
			t.Errorf("CheckAmount(%d, %q) = %v, want nil", tc.amount, tc.currency, err)
		case tc.reason != "" && (!errors.As(err, &le) || le.Reason != tc.reason || le.LimitMinor != tc.limit || le.Error() == ""):
			t.Errorf("CheckAmount(%d, %q) = %#v, want %s (limit %d)", tc.amount, tc.currency, err, tc.reason, tc.limit)
		}
	}
}
