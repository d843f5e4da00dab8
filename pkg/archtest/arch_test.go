package archtest_test

import (
	"slices"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/archtest"
)

// TestRepositoryFollowsTheRules checks the real import graph.
func TestRepositoryFollowsTheRules(t *testing.T) {
	t.Parallel()
	pkgs, err := archtest.List("../..", "./...")
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found %d packages; the test is not looking at the repository", len(pkgs))
	}
	for _, v := range archtest.Violations(pkgs) {
		t.Error(v)
	}
}

// TestRulesCatchViolations proves the checker fails on each kind of bad import.
func TestRulesCatchViolations(t *testing.T) {
	t.Parallel()
	m := archtest.Module + "/"
	pkgs := []archtest.Package{
		{ImportPath: m + "pkg/outbox", Imports: []string{"context", m + "services/orders/ordersapi"}},
		{ImportPath: m + "services/orders/internal/orderssvc", Imports: []string{m + "services/catalog/catalogapi", m + "pkg/outbox"}},
		{ImportPath: m + "services/orders/internal/orderssvc", TestImports: []string{m + "services/catalog/internal/productpg"}},
		{ImportPath: m + "services/payments/cmd/payments", XTestImports: []string{m + "services/orders/migrations"}},
		{ImportPath: m + "services/orders/internal/orderhttp", Imports: []string{m + "services/orders/internal/orders"}},
		{ImportPath: m + "services/search/internal/x", Imports: []string{m + "services/catalog/catalogapi/v2"}},
		{ImportPath: "example.com/other", Imports: []string{m + "services/orders/internal/x"}},
	}
	want := []string{
		"pkg/outbox imports services/orders/ordersapi: building blocks in pkg/ never import services/",
		"services/orders/internal/orderssvc imports services/catalog/internal/productpg: a service imports another only through its api package (services/catalog/catalogapi)",
		"services/payments/cmd/payments imports services/orders/migrations: a service imports another only through its api package (services/orders/ordersapi)",
	}
	if got := archtest.Violations(pkgs); !slices.Equal(got, want) {
		t.Fatalf("violations:\n%q\nwant:\n%q", got, want)
	}
}
