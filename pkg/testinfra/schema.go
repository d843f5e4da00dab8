package testinfra

import (
	"io/fs"
	"strings"
	"testing"
)

// CarriesSchemas fails tb unless the migration file in fsys contains each
// schema verbatim (name → SQL, e.g. "outbox.Schema": outbox.Schema). A
// service's migrations copy the tables of the building blocks it uses, so
// that it owns its whole schema; this keeps the copies equal to what the
// blocks read and write.
func CarriesSchemas(tb testing.TB, fsys fs.FS, file string, schemas map[string]string) {
	tb.Helper()
	sql, err := fs.ReadFile(fsys, file)
	if err != nil {
		tb.Fatal(err)
	}
	for name, schema := range schemas {
		if !strings.Contains(string(sql), strings.TrimSpace(schema)) {
			tb.Errorf("%s does not contain %s verbatim; copy it again", file, name)
		}
	}
}
