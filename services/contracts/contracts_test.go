// Package contracts_test guards the events every stream carries: one
// test for all publishers, so that no stream is left out. Each
// publisher's <svc>api package declares its Schemas; the golden files sit
// next to it in testdata/golden (ADR 0032).
package contracts_test

import (
	"path/filepath"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
	// new-service: contract imports above this line
)

// TestEventSchemasAreCompatible: the payloads of CATALOG, ORDERS and
// PAYMENTS may gain fields, never lose, rename or retype one in place (a
// breaking change is a new schemaversion). Rewrite the golden files with
// SHOPFLOOR_UPDATE_GOLDEN=1 go test ./services/contracts (a breaking
// change is refused even then).
func TestEventSchemasAreCompatible(t *testing.T) {
	for _, p := range []struct {
		stream, api string
		schemas     []events.Schema
	}{
		{catalogapi.Stream, "catalog/catalogapi", catalogapi.Schemas()},
		{ordersapi.Stream, "orders/ordersapi", ordersapi.Schemas()},
		{paymentsapi.Stream, "payments/paymentsapi", paymentsapi.Schemas()},
		// new-service: streams above this line
	} {
		t.Run(p.stream, func(t *testing.T) {
			t.Parallel()
			events.CheckGolden(t, filepath.Join("..", p.api, "testdata", "golden"), p.schemas, events.UpdateGolden())
		})
	}
}
