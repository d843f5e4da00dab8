package paymentsapi

import (
	"fmt"
	"slices"
	"strings"

	"github.com/shopfloor/shopfloor/pkg/money"
)

// Payments' limits: the currencies it takes and the smallest and largest
// payment in each, as pkg/money declares them for catalog, orders and
// payments alike. Payments validates every payment request and every
// order.placed against them (CheckAmount), and orders refuses at checkout
// an order payments could not charge, so that an accepted order never
// becomes a charge payments has to reject.
//
// A change in pkg/money is a change of contract: orders starts refusing
// (or accepting) checkouts when it is built with the new values, payments
// when it is built with them. Raise a maximum in payments first, lower it
// in orders first; with both built from one commit, deploy payments first.

// MinAmountMinor is the smallest payment in any currency, in minor units.
const MinAmountMinor = money.MinAmountMinor

// Currencies returns the ISO 4217 codes of the currencies payments takes,
// sorted. The slice is the caller's own.
func Currencies() []string {
	cs := money.Currencies()
	slices.Sort(cs)
	return cs
}

// MaxAmountMinor returns the largest payment payments takes in currency,
// in minor units, and false when payments does not take the currency.
func MaxAmountMinor(currency string) (int64, bool) { return money.MaxAmountMinor(currency) }

// Reasons of a LimitError; stable, machine-readable.
const (
	// LimitCurrency: payments does not take the currency.
	LimitCurrency = "unsupported_currency"
	// LimitBelowMin: the amount is below MinAmountMinor.
	LimitBelowMin = "amount_below_minimum"
	// LimitAboveMax: the amount is above the currency's MaxAmountMinor.
	LimitAboveMax = "amount_above_maximum"
)

// LimitError is an amount or currency payments cannot charge.
type LimitError struct {
	// Reason is LimitCurrency, LimitBelowMin or LimitAboveMax.
	Reason string
	// Currency and AmountMinor are what was asked for.
	Currency    string
	AmountMinor int64
	// LimitMinor is the limit the amount breaks (the minimum or the
	// currency's maximum); zero for LimitCurrency.
	LimitMinor int64
}

func (e *LimitError) Error() string {
	switch e.Reason {
	case LimitCurrency:
		return fmt.Sprintf("payments does not take %q (it takes %s)", e.Currency, strings.Join(Currencies(), ", "))
	case LimitBelowMin:
		return fmt.Sprintf("amount %d %s is below the smallest payment (%d minor units)", e.AmountMinor, e.Currency, e.LimitMinor)
	default:
		return fmt.Sprintf("amount %d %s is above the largest payment in %s (%d minor units)", e.AmountMinor, e.Currency,
			e.Currency, e.LimitMinor)
	}
}

// CheckAmount reports whether payments can charge amountMinor (minor units)
// in currency: nil, or a *LimitError naming the limit it breaks. The
// currency is checked first: an amount means nothing in a currency
// payments does not take.
func CheckAmount(amountMinor int64, currency string) error {
	maxMinor, ok := money.MaxAmountMinor(currency)
	switch {
	case !ok:
		return &LimitError{Reason: LimitCurrency, Currency: currency, AmountMinor: amountMinor}
	case amountMinor < MinAmountMinor:
		return &LimitError{Reason: LimitBelowMin, Currency: currency, AmountMinor: amountMinor, LimitMinor: MinAmountMinor}
	case amountMinor > maxMinor:
		return &LimitError{Reason: LimitAboveMax, Currency: currency, AmountMinor: amountMinor, LimitMinor: maxMinor}
	}
	return nil
}
