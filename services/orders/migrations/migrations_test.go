package migrations_test

import (
	"testing"

	"github.com/shopfloor/shopfloor/pkg/audit"
	"github.com/shopfloor/shopfloor/pkg/idempotency"
	"github.com/shopfloor/shopfloor/pkg/inbox"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/orders/migrations"
)

// The outbox, idempotency and inbox tables belong to building blocks in
// pkg/: the migration must carry their schemas unchanged, or the blocks
// read columns that are not there.
func TestMigrationCarriesTheBlocksSchemas(t *testing.T) {
	t.Parallel()
	testinfra.CarriesSchemas(t, migrations.FS, "00001_orders.sql", map[string]string{"outbox.Schema": outbox.Schema, "idempotency.Schema": idempotency.Schema, "inbox.Schema": inbox.Schema})
	testinfra.CarriesSchemas(t, migrations.FS, "00002_outbox_position.sql", map[string]string{"outbox.PositionSchema": outbox.PositionSchema})
	testinfra.CarriesSchemas(t, migrations.FS, "00030_outbox_parked.sql", map[string]string{"outbox.ParkSchema": outbox.ParkSchema})
	testinfra.CarriesSchemas(t, migrations.FS, "00031_outbox_leader.sql", map[string]string{"outbox.LeaseSchema": outbox.LeaseSchema})
	testinfra.CarriesSchemas(t, migrations.FS, "00011_audit_log.sql", map[string]string{"audit.Schema": audit.Schema})
}
