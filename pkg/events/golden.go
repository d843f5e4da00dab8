package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Schema declares one event type at one schema version. A service lists
// the Schemas it publishes (usually next to the payload types in its
// <svc>api package) and passes them to CheckGolden in a test.
type Schema struct {
	// Type is the event type, e.g. "order.placed".
	Type string
	// Version is the schema version (>= 1), the envelope's schemaversion.
	Version int
	// Example is a payload value of the type that is published, with every
	// field filled in: non-nil pointers, non-empty slices and maps. Only
	// the fields present in the example are recorded in the golden file
	// and protected from breaking changes.
	Example any
}

// TB is the part of testing.TB that CheckGolden uses. *testing.T,
// *testing.B and any testing.TB satisfy it; declaring it here keeps
// package testing out of the production binaries that import events.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
}

// Fixed attributes of golden envelopes, so that a golden file changes only
// when the payload or the envelope encoding changes.
const (
	goldenID          = "01900000-0000-7000-8000-000000000001"
	goldenCausationID = "01900000-0000-7000-8000-000000000000"
	goldenTime        = "2024-06-01T12:00:00.123456Z"
	goldenSource      = "golden"
	goldenSubject     = "golden-subject"
	goldenTraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	goldenTraceState  = "shopfloor=golden"
)

// UpdateGoldenEnv is the environment variable that makes UpdateGolden
// true: SHOPFLOOR_UPDATE_GOLDEN=1 go test ./services/orders/ordersapi
// rewrites orders' golden files (a breaking change is refused even then).
const UpdateGoldenEnv = "SHOPFLOOR_UPDATE_GOLDEN"

// UpdateGolden reports whether CheckGolden should write golden files
// instead of only comparing (UpdateGoldenEnv is "1").
func UpdateGolden() bool { return os.Getenv(UpdateGoldenEnv) == "1" }

// GoldenFile is the file name CheckGolden uses for typ at version, e.g.
// "order.placed.v1.json".
func GoldenFile(typ string, version int) string {
	return typ + ".v" + strconv.Itoa(version) + ".json"
}

// GoldenEnvelope is the envelope CheckGolden records for s: s.Example as
// data and fixed values for every other attribute (id, time, source
// "golden", subject, aggregateversion 1, causation and trace context), so
// that the golden file holds every attribute the encoding can write.
func GoldenEnvelope(s Schema) (Envelope, error) {
	at, err := time.Parse(time.RFC3339Nano, goldenTime)
	if err != nil {
		return Envelope{}, fmt.Errorf("events: golden time: %w", err)
	}
	e := Envelope{
		ID:               goldenID,
		Type:             s.Type,
		Source:           goldenSource,
		Subject:          goldenSubject,
		Time:             at,
		SchemaVersion:    s.Version,
		AggregateVersion: 1,
		CorrelationID:    goldenCausationID,
		CausationID:      goldenCausationID,
		TraceParent:      goldenTraceParent,
		TraceState:       goldenTraceState,
	}
	raw, err := json.Marshal(s.Example)
	if err != nil {
		return Envelope{}, fmt.Errorf("events: golden %s v%d: marshal example %T: %w", s.Type, s.Version, s.Example, err)
	}
	e.Data = raw
	if err := e.Validate(); err != nil {
		return Envelope{}, fmt.Errorf("events: golden %s v%d: %w", s.Type, s.Version, err)
	}
	return e, nil
}

// CheckGolden guards the published encoding of every schema against
// breaking changes. For each schema it encodes GoldenEnvelope(schema) with
// Marshal (indented for readable diffs) and compares it with
// <dir>/<type>.v<version>.json:
//
//   - The JSON shapes are compared recursively: object keys and the kind
//     of each value (object, array, string, number, boolean, null; array
//     elements merged). A key that is gone (removed or renamed) or a value
//     whose kind changed is incompatible and fails the test with a
//     diff-like list ("- path", "~ path", "+ path"). Added keys are
//     compatible; other value changes are ignored.
//   - The golden file must still Unmarshal and decode (DecodeData) into a
//     value of the example's type: current code must read old events.
//   - A missing file fails the test, unless update is set.
//
// With update set (typically from a -update flag of the caller's test),
// missing files are created and compatible changes are written; an
// incompatible change is still a failure and the file is left alone,
// because a breaking change must be published as a new Version of the
// type, with its own golden file. Delete the old file only if that
// version was never released.
//
// Every problem is reported with t.Errorf (never Fatalf) and the other
// schemas are still checked.
func CheckGolden(t TB, dir string, schemas []Schema, update bool) {
	t.Helper()
	seen := make(map[string]bool, len(schemas))
	for _, s := range schemas {
		name := GoldenFile(s.Type, s.Version)
		if seen[name] {
			t.Errorf("events: golden: schema %s v%d declared twice", s.Type, s.Version)
			continue
		}
		seen[name] = true
		checkGolden(t, filepath.Join(dir, name), s, update)
	}
}

func checkGolden(t TB, path string, s Schema, update bool) {
	t.Helper()
	e, err := GoldenEnvelope(s)
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	got, err := marshalIndent(e)
	if err != nil {
		t.Errorf("events: golden %s: %v", path, err)
		return
	}

	want, err := os.ReadFile(filepath.Clean(path))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if !update {
			t.Errorf("events: golden file %s is missing; run the test with -update to create it", path)
			return
		}
		if err := writeGolden(path, got); err != nil {
			t.Errorf("%v", err)
			return
		}
		t.Logf("events: created golden file %s", path)
		return
	case err != nil:
		t.Errorf("events: golden %s: %v", path, err)
		return
	}

	d, err := diffShapes(want, got)
	if err != nil {
		t.Errorf("events: golden %s: %v", path, err)
		return
	}
	if len(d.breaking) > 0 {
		t.Errorf("events: golden %s: incompatible change to %s v%d:\n%s\n"+
			"Consumers of %s v%d break on a removed, renamed or retyped field. "+
			"Keep v%d as it is and publish the new shape as a new schema version (v%d) with its own golden file; "+
			"delete %s only if v%d was never released.",
			path, s.Type, s.Version, d.String(),
			s.Type, s.Version, s.Version, s.Version+1, path, s.Version)
		return
	}
	if err := decodeGolden(want, s.Example); err != nil {
		t.Errorf("events: golden %s: current code cannot read the recorded event: %v", path, err)
		return
	}
	if bytes.Equal(want, got) {
		return
	}
	if update {
		if err := writeGolden(path, got); err != nil {
			t.Errorf("%v", err)
			return
		}
		t.Logf("events: updated golden file %s (compatible change)", path)
		return
	}
	if len(d.added) > 0 {
		t.Logf("events: golden %s: compatible change; run the test with -update to record it:\n%s", path, d.String())
	}
}

func marshalIndent(e Envelope) ([]byte, error) {
	b, err := Marshal(e)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return nil, fmt.Errorf("indent: %w", err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

func writeGolden(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("events: golden %s: %w", path, err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("events: golden %s: %w", path, err)
	}
	return nil
}

// decodeGolden checks that the recorded event is still readable by the
// current code: Unmarshal accepts it and its data decodes into a new value
// of the example's type.
func decodeGolden(b []byte, example any) error {
	e, err := Unmarshal(b)
	if err != nil {
		return err
	}
	if example == nil {
		return nil
	}
	dst := reflect.New(reflect.TypeOf(example))
	return e.DecodeData(dst.Interface())
}

// Kinds of JSON values in a shape.
const (
	kindObject = "object"
	kindArray  = "array"
	kindString = "string"
	kindNumber = "number"
	kindBool   = "boolean"
	kindNull   = "null"
	kindMixed  = "mixed" // array elements of different kinds
)

// shape is the structure of a JSON value without its scalar values.
type shape struct {
	kind   string
	fields map[string]*shape // kindObject
	elem   *shape            // kindArray; nil for an empty array
}

func (s *shape) String() string {
	if s.kind == kindArray && s.elem != nil {
		return "array of " + s.elem.String()
	}
	return s.kind
}

// shapeOf returns the shape of the JSON document b.
func shapeOf(b []byte) (*shape, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return shapeOfValue(v), nil
}

func shapeOfValue(v any) *shape {
	switch v := v.(type) {
	case map[string]any:
		s := &shape{kind: kindObject, fields: make(map[string]*shape, len(v))}
		for k, fv := range v {
			s.fields[k] = shapeOfValue(fv)
		}
		return s
	case []any:
		s := &shape{kind: kindArray}
		for _, ev := range v {
			s.elem = mergeShapes(s.elem, shapeOfValue(ev))
		}
		return s
	case string:
		return &shape{kind: kindString}
	case json.Number:
		return &shape{kind: kindNumber}
	case bool:
		return &shape{kind: kindBool}
	default:
		return &shape{kind: kindNull}
	}
}

// mergeShapes unites the shapes of two array elements: objects get the
// union of their keys, values of different kinds become kindMixed.
func mergeShapes(a, b *shape) *shape {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case a.kind != b.kind:
		return &shape{kind: kindMixed}
	case a.kind == kindObject:
		m := &shape{kind: kindObject, fields: make(map[string]*shape, len(a.fields))}
		for k, v := range a.fields {
			m.fields[k] = v
		}
		for k, v := range b.fields {
			m.fields[k] = mergeShapes(m.fields[k], v)
		}
		return m
	case a.kind == kindArray:
		return &shape{kind: kindArray, elem: mergeShapes(a.elem, b.elem)}
	default:
		return a
	}
}

// shapeDiff lists the differences between a recorded and a current shape
// as diff-like lines.
type shapeDiff struct {
	breaking []string // "- path ..." and "~ path ..."
	added    []string // "+ path ..."
}

func (d shapeDiff) String() string {
	lines := append(slices.Clone(d.breaking), d.added...)
	return "\t" + strings.Join(lines, "\n\t")
}

// diffShapes compares the recorded document old with the current one.
func diffShapes(old, cur []byte) (shapeDiff, error) {
	var d shapeDiff
	o, err := shapeOf(old)
	if err != nil {
		return d, fmt.Errorf("golden file is not JSON: %w", err)
	}
	c, err := shapeOf(cur)
	if err != nil {
		return d, fmt.Errorf("current encoding is not JSON: %w", err)
	}
	d.compare("$", o, c)
	return d, nil
}

func (d *shapeDiff) compare(path string, old, cur *shape) {
	if old.kind != cur.kind {
		d.breaking = append(d.breaking, fmt.Sprintf("~ %s: type changed from %s to %s", path, old, cur))
		return
	}
	switch old.kind {
	case kindObject:
		keys := make([]string, 0, len(old.fields)+len(cur.fields))
		for k := range old.fields {
			keys = append(keys, k)
		}
		for k := range cur.fields {
			if _, ok := old.fields[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			p := childPath(path, k)
			o, inOld := old.fields[k]
			c, inCur := cur.fields[k]
			switch {
			case !inCur:
				d.breaking = append(d.breaking, fmt.Sprintf("- %s (%s): removed or renamed", p, o))
			case !inOld:
				d.added = append(d.added, fmt.Sprintf("+ %s (%s): added", p, c))
			default:
				d.compare(p, o, c)
			}
		}
	case kindArray:
		switch {
		case old.elem == nil:
			// Nothing recorded about the elements; anything goes.
		case cur.elem == nil:
			d.breaking = append(d.breaking, fmt.Sprintf("~ %s[*] (%s): the example array is now empty, so its elements cannot be checked; fill it in", path, old.elem))
		default:
			d.compare(path+"[*]", old.elem, cur.elem)
		}
	}
}

// childPath appends key to a JSONPath-like path, quoting keys that are not
// plain identifiers.
func childPath(path, key string) string {
	plain := key != ""
	for i, r := range key {
		letter := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		digit := i > 0 && r >= '0' && r <= '9'
		if !letter && !digit {
			plain = false
			break
		}
	}
	if plain {
		return path + "." + key
	}
	return path + "[" + strconv.Quote(key) + "]"
}
