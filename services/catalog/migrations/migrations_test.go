package migrations_test

import (
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/services/catalog/migrations"
)

// The outbox table is pkg/outbox's: the migration must carry its schema
// unchanged, or the relay reads columns that are not there.
func TestMigrationCarriesTheOutboxSchema(t *testing.T) {
	t.Parallel()
	sql, err := migrations.FS.ReadFile("00001_catalog.sql")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(sql), strings.TrimSpace(outbox.Schema)) {
		t.Fatal("00001_catalog.sql does not contain outbox.Schema verbatim; copy it again")
	}
}
