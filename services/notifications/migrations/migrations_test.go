package migrations_test

import (
	"testing"

	"github.com/shopfloor/shopfloor/pkg/audit"
	"github.com/shopfloor/shopfloor/pkg/inbox"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/notifications/migrations"
)

// The job queue and inbox tables belong to building blocks in pkg/: the
// migration must carry their schemas unchanged, or the blocks read columns
// that are not there.
func TestMigrationCarriesTheBlocksSchemas(t *testing.T) {
	t.Parallel()
	testinfra.CarriesSchemas(t, migrations.FS, "00001_notifications.sql", map[string]string{"jobqueue.Schema": jobqueue.Schema, "inbox.Schema": inbox.Schema})
	testinfra.CarriesSchemas(t, migrations.FS, "00003_jobqueue_dead_lettered_at.sql", map[string]string{"jobqueue.DeadLetterSchema": jobqueue.DeadLetterSchema})
	testinfra.CarriesSchemas(t, migrations.FS, "00020_jobqueue_pause.sql", map[string]string{"jobqueue.PauseSchema": jobqueue.PauseSchema})
	testinfra.CarriesSchemas(t, migrations.FS, "00011_audit_log.sql", map[string]string{"audit.Schema": audit.Schema})
}
