package events_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/events"
)

// TestReadableRefusesAnUnknownSchemaVersion: a reader reads the versions it
// knows, skips types it does not handle, and refuses (as poison, naming
// what it knows) a schemaversion of a handled type that it does not know.
func TestReadableRefusesAnUnknownSchemaVersion(t *testing.T) {
	t.Parallel()
	knows := []events.Schema{{Type: "order.placed", Version: 1}, {Type: "order.placed", Version: 2}, {Type: "order.paid", Version: 1}}
	for _, tt := range []struct {
		typ     string
		version int
		refused bool
	}{
		{"order.placed", 1, false},
		{"order.placed", 2, false},
		{"order.paid", 1, false},
		{"order.shipped", 7, false}, // not handled: the reader skips it
		{"order.paid", 2, true},
		{"order.placed", 3, true},
		{"order.placed", 0, true}, // no schemaversion at all
	} {
		err := events.Readable(events.Envelope{ID: "e1", Type: tt.typ, SchemaVersion: tt.version}, knows)
		if got := err != nil; got != tt.refused {
			t.Errorf("%s v%d: err %v, want refused %t", tt.typ, tt.version, err, tt.refused)
			continue
		}
		if err == nil {
			continue
		}
		if !errors.Is(err, events.ErrUnknownSchema) || !errors.Is(err, events.ErrInvalid) {
			t.Errorf("%s v%d: %v does not match ErrUnknownSchema and ErrInvalid", tt.typ, tt.version, err)
		}
		if tt.typ == "order.placed" && !strings.Contains(err.Error(), "this reader knows v1, v2") {
			t.Errorf("%s v%d: %q does not name the known versions", tt.typ, tt.version, err)
		}
	}
}
