package events

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ErrUnknownSchema marks an envelope whose type a reader handles but
// whose schemaversion it does not know. It also matches ErrInvalid: the
// event is poison to this reader (dead-letter it), not a transient error.
var ErrUnknownSchema = errors.New("events: unknown schema version")

// Readable says whether a reader that knows schemas (usually the
// publisher's own declaration, e.g. ordersapi.Schemas(), as compiled into
// the reader) can read e. It returns nil when e's type is not among
// schemas (the reader does not handle it and may skip it) or when e's
// (type, schemaversion) is one of them. Otherwise it returns an error
// matching ErrUnknownSchema and ErrInvalid that names the versions the
// reader knows: a new schemaversion is a breaking change (see "Reading and
// evolving schemas" in the package doc), so a reader must not guess at it;
// it dead-letters the event until it is upgraded, then redrives it.
func Readable(e Envelope, schemas []Schema) error {
	var known []int
	for _, s := range schemas {
		if s.Type != e.Type {
			continue
		}
		if s.Version == e.SchemaVersion {
			return nil
		}
		known = append(known, s.Version)
	}
	if known == nil {
		return nil
	}
	slices.Sort(known)
	vs := make([]string, len(known))
	for i, v := range known {
		vs[i] = "v" + strconv.Itoa(v)
	}
	return fmt.Errorf("%w (%w): %s %s is schemaversion %d; this reader knows %s; upgrade the reader, then redrive the event",
		ErrUnknownSchema, ErrInvalid, e.Type, e.ID, e.SchemaVersion, strings.Join(vs, ", "))
}
