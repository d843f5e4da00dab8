package archtest_test

import (
	"os"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/shopfloor/shopfloor/pkg/archtest"
)

// TestEveryServiceHasTheStandardShape checks the real services/ folder.
func TestEveryServiceHasTheStandardShape(t *testing.T) {
	t.Parallel()
	got, err := archtest.ShapeViolations(os.DirFS("../.."))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range got {
		t.Error(v)
	}
}

// TestShapeViolationsFindEachMissingPart proves the rule fails on each
// kind of missing part, and leaves edge services and NotServices alone.
func TestShapeViolationsFindEachMissingPart(t *testing.T) {
	t.Parallel()
	file := &fstest.MapFile{Data: []byte("x")}
	dir := &fstest.MapFile{Mode: 0o755 | os.ModeDir}
	fsys := fstest.MapFS{
		// A complete service that owns data.
		"services/orders/README.md": file, "services/orders/cmd/orders/main.go": file, "services/orders/cmd/orders/config.go": file,
		"services/orders/cmd/orders/run.go": file, "services/orders/cmd/orders/testdata/help.txt": file, "services/orders/ordersapi": dir,
		"services/orders/migrations": dir, "services/orders/internal/order": dir, "services/orders/internal/orderhttp": dir,
		"services/orders/internal/orderpg": dir, "services/orders/internal/orderstream": dir, "services/orders/internal/ordersvc": dir,
		// An edge service: no data, no contract package.
		"services/web/README.md": file, "services/web/cmd/web/main.go": file, "services/web/cmd/web/config.go": file,
		"services/web/cmd/web/run.go": file, "services/web/cmd/web/testdata/help.txt": file, "services/web/internal/shop": dir,
		// A data-owning service without a store or a contract, its
		// configuration in run.go.
		"services/stock/README.md": file, "services/stock/cmd/stock/main.go": file, "services/stock/cmd/stock/run.go": file,
		"services/stock/cmd/stock/testdata/help.txt": file, "services/stock/migrations": dir,
		"services/stock/internal/item": dir, "services/stock/internal/itemhttp": dir, "services/stock/internal/itemstream": dir,
		"services/stock/internal/itemsvc": dir,
		// No README, no command.
		"services/bare/internal/x": dir,
		// Not a service.
		"services/contracts/contracts_test.go": file,
	}
	got, err := archtest.ShapeViolations(fsys)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"services/bare: no README.md",
		"services/bare: no cmd/bare/config.go",
		"services/bare: no cmd/bare/main.go",
		"services/bare: no cmd/bare/run.go",
		"services/bare: no cmd/bare/testdata/help.txt",
		"services/stock: no cmd/stock/config.go",
		"services/stock: no internal/itempg",
		"services/stock: no stockapi/ (a service that owns data publishes its contract)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("violations:\n%q\nwant:\n%q", got, want)
	}
}
