package migrations_test

import (
	"testing"

	"github.com/shopfloor/shopfloor/pkg/audit"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/catalog/migrations"
)

// The outbox table is pkg/outbox's: the migration must carry its schema
// unchanged, or the relay reads columns that are not there.
func TestMigrationCarriesTheOutboxSchema(t *testing.T) {
	t.Parallel()
	testinfra.CarriesSchemas(t, migrations.FS, "00001_catalog.sql", map[string]string{"outbox.Schema": outbox.Schema})
	testinfra.CarriesSchemas(t, migrations.FS, "00002_outbox_position.sql", map[string]string{"outbox.PositionSchema": outbox.PositionSchema})
	testinfra.CarriesSchemas(t, migrations.FS, "00030_outbox_parked.sql", map[string]string{"outbox.ParkSchema": outbox.ParkSchema})
	testinfra.CarriesSchemas(t, migrations.FS, "00031_outbox_leader.sql", map[string]string{"outbox.LeaseSchema": outbox.LeaseSchema})
	testinfra.CarriesSchemas(t, migrations.FS, "00011_audit_log.sql", map[string]string{"audit.Schema": audit.Schema})
}
