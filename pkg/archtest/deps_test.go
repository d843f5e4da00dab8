package archtest_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/archtest"
)

// TestNoBinaryCompilesInABannedModule checks `go list -deps` of every main
// package of the repository (services/*/cmd/* and the rest) against
// BannedModules.
func TestNoBinaryCompilesInABannedModule(t *testing.T) {
	t.Parallel()
	bins, err := archtest.ListBinaries("../..", "./...")
	if err != nil {
		t.Fatal(err)
	}
	services := 0
	for _, b := range bins {
		if strings.HasPrefix(b.ImportPath, archtest.Module+"/services/") && strings.Contains(b.ImportPath, "/cmd/") {
			services++
		}
	}
	if services < 7 {
		t.Fatalf("go list found %d service binaries; the test is not looking at the repository", services)
	}
	for _, v := range archtest.BannedDeps(bins, archtest.BannedModules) {
		t.Error(v)
	}
}

// TestBannedDepsNamesTheBinaryAndTheModule proves the check finds a banned
// module's packages, and only its own (a module whose path merely starts
// the same is fine).
func TestBannedDepsNamesTheBinaryAndTheModule(t *testing.T) {
	t.Parallel()
	bins := []archtest.Binary{
		{ImportPath: "m/services/catalog/cmd/catalog", Deps: []string{"context", "github.com/afex/hystrix-go/hystrix", "github.com/afex/hystrix-go/hystrix/metric_collector"}},
		{ImportPath: "m/services/orders/cmd/orders", Deps: []string{"github.com/streadway/handy/breaker", "github.com/streadway/handyman"}},
		{ImportPath: "m/services/search/cmd/search", Deps: []string{"github.com/sony/gobreaker"}},
	}
	want := []string{
		"m/services/catalog/cmd/catalog compiles in github.com/afex/hystrix-go (github.com/afex/hystrix-go/hystrix): abandoned",
		"m/services/orders/cmd/orders compiles in github.com/streadway/handy (github.com/streadway/handy/breaker): abandoned",
	}
	got := archtest.BannedDeps(bins, map[string]string{"github.com/afex/hystrix-go": "abandoned", "github.com/streadway/handy": "abandoned"})
	if !slices.Equal(got, want) {
		t.Fatalf("banned deps:\n%q\nwant:\n%q", got, want)
	}
}
