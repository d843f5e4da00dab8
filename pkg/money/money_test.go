package money_test

import (
	"slices"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/money"
)

// TestCurrenciesAreOneConsistentDeclaration: the default comes first,
// every code is an ISO 4217 shape, appears once and has a maximum above
// the minimum; an unknown code has none.
func TestCurrenciesAreOneConsistentDeclaration(t *testing.T) {
	t.Parallel()
	codes := money.Currencies()
	if len(codes) == 0 || codes[0] != money.Default() {
		t.Fatalf("Currencies() = %v, want the default %q first", codes, money.Default())
	}
	for i, c := range codes {
		if len(c) != 3 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' || c[2] < 'A' || c[2] > 'Z' {
			t.Errorf("%q is not an ISO 4217 code", c)
		}
		if slices.Index(codes, c) != i {
			t.Errorf("%s declared twice", c)
		}
		if !money.Supported(c) {
			t.Errorf("%s: not Supported", c)
		}
		if m, ok := money.MaxAmountMinor(c); !ok || m <= money.MinAmountMinor {
			t.Errorf("%s: max %d (%t), want above the minimum %d", c, m, ok, money.MinAmountMinor)
		}
	}
	codes[0] = "XXX" // the caller's own copy
	if money.Currencies()[0] != money.Default() || money.Supported("XXX") {
		t.Error("Currencies() shares its slice with the declaration")
	}
	if _, ok := money.MaxAmountMinor("JPY"); ok || money.Supported("eur") {
		t.Error("an undeclared code (or one in lower case) is supported")
	}
}
