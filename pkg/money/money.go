// Package money declares the currencies shopfloor trades in and the limits
// of one payment: the one declaration that catalog (which currencies a
// product is priced in), orders (which checkouts it accepts) and payments
// (which charges it makes, paymentsapi.CheckAmount) share, so that a price
// can always become an order and an order always a charge.
//
// A change here is a change of contract between those services: see
// paymentsapi's limits for the order in which to deploy it.
package money

import "slices"

// MinAmountMinor is the smallest payment in any currency, in minor units:
// a payment of nothing is not a charge a provider accepts.
const MinAmountMinor int64 = 1

// currency is one currency shopfloor trades in.
type currency struct {
	// code is the ISO 4217 code.
	code string
	// maxAmountMinor is the largest payment, in minor units.
	maxAmountMinor int64
}

// currencies in the order a shopper sees them; the first is the default.
// A million in major units for each; all three have two decimals.
var currencies = []currency{
	{code: "EUR", maxAmountMinor: 100_000_000},
	{code: "USD", maxAmountMinor: 100_000_000},
	{code: "GBP", maxAmountMinor: 100_000_000},
}

// Currencies returns the ISO 4217 codes of the currencies shopfloor trades
// in, the default first. The slice is the caller's own.
func Currencies() []string {
	out := make([]string, len(currencies))
	for i, c := range currencies {
		out[i] = c.code
	}
	return out
}

// Default is the currency of a price or an order that names none.
func Default() string { return currencies[0].code }

// Supported reports whether shopfloor trades in code.
func Supported(code string) bool {
	return slices.ContainsFunc(currencies, func(c currency) bool { return c.code == code })
}

// MaxAmountMinor returns the largest payment in code, in minor units, and
// false when shopfloor does not trade in code.
func MaxAmountMinor(code string) (int64, bool) {
	for _, c := range currencies {
		if c.code == code {
			return c.maxAmountMinor, true
		}
	}
	return 0, false
}
