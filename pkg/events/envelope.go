package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// ErrInvalid is wrapped by every error about an envelope that breaks the
// contract: from New, Validate, Marshal and Unmarshal.
var ErrInvalid = errors.New("events: invalid envelope")

const (
	// SpecVersion is the CloudEvents version of every envelope.
	SpecVersion = "1.0"
	// DataContentType is the media type of data in every envelope.
	DataContentType = "application/json"
)

// Wire names of the attributes, as written by Marshal and used in
// validation messages.
const (
	attrSpecVersion      = "specversion"
	attrID               = "id"
	attrSource           = "source"
	attrType             = "type"
	attrSubject          = "subject"
	attrTime             = "time"
	attrDataContentType  = "datacontenttype"
	attrDataSchema       = "dataschema"
	attrSchemaVersion    = "schemaversion"
	attrAggregateVersion = "aggregateversion"
	attrCorrelationID    = "correlationid"
	attrCausationID      = "causationid"
	attrTraceParent      = "traceparent"
	attrTraceState       = "tracestate"
	attrData             = "data"
)

// maxTraceState is the longest tracestate the W3C recommendation asks
// vendors to propagate.
const maxTraceState = 512

// Envelope is one event: CloudEvents attributes, shopfloor extensions and
// the JSON payload. The zero value is not valid; build envelopes with New
// (and CausedBy, WithTrace) and read them with Unmarshal. Envelope is a
// value type; its methods never modify the receiver, except that Data is
// shared between copies and must not be modified in place.
type Envelope struct {
	// ID is a UUIDv7 in canonical lower-case form, unique per event; the
	// deduplication key for at-least-once delivery.
	ID string
	// Type says what happened, e.g. "order.placed"; it matches
	// ^[a-z]+(\.[a-z_]+)+$.
	Type string
	// Source is the publishing service, e.g. "orders".
	Source string
	// Subject is the aggregate the event is about, e.g. the order id, and
	// the partition key: ordering is guaranteed per subject only.
	Subject string
	// Time is when the change happened, in UTC. New truncates it to
	// microseconds, the precision PostgreSQL keeps, so an envelope read
	// back from the outbox equals the one written.
	Time time.Time
	// SchemaVersion is the version (>= 1) of the payload schema of Type.
	SchemaVersion int
	// AggregateVersion is the version (>= 1) of Subject after this change,
	// strictly increasing per subject; consumers use it to order and
	// deduplicate events of one subject.
	AggregateVersion int64
	// CorrelationID identifies the whole business flow. New sets it to ID;
	// CausedBy copies it from the event being handled.
	CorrelationID string
	// CausationID is the ID of the event that caused this one, or empty.
	CausationID string
	// TraceParent is the W3C traceparent of the producing span, or empty.
	TraceParent string
	// TraceState is the W3C tracestate that goes with TraceParent, or
	// empty. It is only valid together with a TraceParent.
	TraceState string
	// Data is the payload: a JSON object, compact when built by New or
	// Unmarshal.
	Data json.RawMessage
}

// FieldError is one attribute that breaks the envelope contract.
type FieldError struct {
	// Field is the wire name of the attribute, e.g. "schemaversion".
	Field string
	// Problem says what is wrong, in words a person can act on.
	Problem string
	// Err is the underlying error, if there is one (e.g. a JSON error).
	Err error
}

// ValidationError lists every attribute of an envelope that breaks the
// contract. It matches ErrInvalid with errors.Is, and any FieldError.Err.
type ValidationError struct {
	// Fields are the bad attributes in wire order; never empty.
	Fields []FieldError
}

// Error names every bad attribute in one message, e.g.
// `events: invalid envelope: type: must match ... got "Order"; schemaversion: must be >= 1, got 0`.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString(ErrInvalid.Error())
	for i, f := range e.Fields {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(f.Field)
		b.WriteString(": ")
		b.WriteString(f.Problem)
	}
	return b.String()
}

// Unwrap returns ErrInvalid followed by the underlying errors of the
// fields, so that errors.Is and errors.As see all of them.
func (e *ValidationError) Unwrap() []error {
	errs := []error{ErrInvalid}
	for _, f := range e.Fields {
		if f.Err != nil {
			errs = append(errs, f.Err)
		}
	}
	return errs
}

// New builds a valid envelope for a change that happened at now.
//
// The id is a fresh UUIDv7 (from the wall clock, monotonic within the
// process, whatever now says); CorrelationID is set to the id (use
// CausedBy when handling another event); Time is now in UTC truncated to
// microseconds; data is marshalled with encoding/json and must give a JSON
// object (a struct or a map; nil, slices and scalars are rejected).
//
// New validates everything Validate does and returns a *ValidationError
// (wrapping ErrInvalid) that names every bad argument.
func New(source, typ, subject string, schemaVersion int, aggregateVersion int64, data any, now time.Time) (Envelope, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Envelope{}, fmt.Errorf("events: new %s id: %w", typ, err)
	}
	e := Envelope{
		ID:               id.String(),
		Type:             typ,
		Source:           source,
		Subject:          subject,
		Time:             now.UTC().Truncate(time.Microsecond),
		SchemaVersion:    schemaVersion,
		AggregateVersion: aggregateVersion,
		CorrelationID:    id.String(),
	}
	raw, marshalErr := json.Marshal(data)
	if marshalErr == nil {
		e.Data = raw
	}
	fields := e.problems()
	if marshalErr != nil {
		for i := range fields {
			if fields[i].Field == attrData {
				fields[i] = FieldError{Field: attrData, Problem: fmt.Sprintf("%T does not marshal to JSON: %v", data, marshalErr), Err: marshalErr}
			}
		}
	}
	if len(fields) > 0 {
		return Envelope{}, &ValidationError{Fields: fields}
	}
	return e, nil
}

// CausedBy returns a copy of e that belongs to the flow of parent, the
// event being handled when e was made: CorrelationID becomes
// parent.CorrelationID (parent.ID if parent has none) and CausationID
// becomes parent.ID. Trace context is not copied: it belongs to the span
// that handles parent, which the caller sets with WithTrace.
func (e Envelope) CausedBy(parent Envelope) Envelope {
	e.CorrelationID = parent.CorrelationID
	if e.CorrelationID == "" {
		e.CorrelationID = parent.ID
	}
	e.CausationID = parent.ID
	return e
}

// WithTrace returns a copy of e carrying the W3C trace context of the
// producing span (the "traceparent" and "tracestate" header values). Empty
// strings clear it. The values are checked by Validate, not here.
func (e Envelope) WithTrace(traceParent, traceState string) Envelope {
	e.TraceParent = traceParent
	e.TraceState = traceState
	return e
}

// Validate reports whether e keeps the envelope contract: id is a
// canonical UUIDv7; source, subject and correlationid are non-empty;
// type matches ^[a-z]+(\.[a-z_]+)+$; time is set (years 1-9999);
// schemaversion and aggregateversion are >= 1; traceparent, if set, is a
// W3C traceparent and tracestate, if set, comes with one; data is a JSON
// object. Text attributes must be valid UTF-8 without control characters,
// because they also travel as transport headers.
//
// The error is a *ValidationError wrapping ErrInvalid whose message names
// every bad attribute by its wire name, or nil.
func (e Envelope) Validate() error {
	if fields := e.problems(); len(fields) > 0 {
		return &ValidationError{Fields: fields}
	}
	return nil
}

// problems returns every contract violation of e, in wire order.
func (e Envelope) problems() []FieldError {
	var fields []FieldError
	add := func(field, format string, args ...any) {
		fields = append(fields, FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}

	if p := idProblem(e.ID); p != "" {
		add(attrID, "%s, got %q", p, e.ID)
	}
	if p := textProblem(e.Source); p != "" {
		add(attrSource, "%s", p)
	}
	if !validType(e.Type) {
		add(attrType, `must match ^[a-z]+(\.[a-z_]+)+$ (e.g. "order.placed"), got %q`, e.Type)
	}
	if p := textProblem(e.Subject); p != "" {
		add(attrSubject, "%s", p)
	}
	switch {
	case e.Time.IsZero():
		add(attrTime, "must be set")
	case e.Time.Year() < 1 || e.Time.Year() > 9999:
		add(attrTime, "year must be in 1-9999, got %d", e.Time.Year())
	}
	if e.SchemaVersion < 1 {
		add(attrSchemaVersion, "must be >= 1, got %d", e.SchemaVersion)
	}
	if e.AggregateVersion < 1 {
		add(attrAggregateVersion, "must be >= 1, got %d", e.AggregateVersion)
	}
	if p := textProblem(e.CorrelationID); p != "" {
		add(attrCorrelationID, "%s", p)
	}
	if e.CausationID != "" {
		if p := textProblem(e.CausationID); p != "" {
			add(attrCausationID, "%s", p)
		}
	}
	if e.TraceParent != "" && !validTraceParent(e.TraceParent) {
		add(attrTraceParent, "must be a W3C traceparent (version-traceid-parentid-flags in lower-case hex), got %q", e.TraceParent)
	}
	if e.TraceState != "" {
		switch {
		case e.TraceParent == "":
			add(attrTraceState, "must come with a traceparent")
		case !validTraceState(e.TraceState):
			add(attrTraceState, "must be at most %d printable ASCII characters", maxTraceState)
		}
	}
	if !isJSONObject(e.Data) {
		add(attrData, "must be a JSON object, got %s", describeJSON(e.Data))
	}
	return fields
}

// idProblem says what is wrong with an event id, or "".
func idProblem(id string) string {
	u, err := uuid.Parse(id)
	switch {
	case err != nil || u.String() != id:
		return "must be a UUID in canonical lower-case form"
	case u.Version() != 7 || u.Variant() != uuid.RFC4122:
		return "must be a version 7 UUID"
	}
	return ""
}

// textProblem says what is wrong with a required text attribute, or "".
func textProblem(s string) string {
	if s == "" {
		return "must not be empty"
	}
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Sprintf("must not contain control characters, got %q", s)
		}
	}
	return ""
}

// validType reports whether typ matches ^[a-z]+(\.[a-z_]+)+$.
func validType(typ string) bool {
	parts := strings.Split(typ, ".")
	if len(parts) < 2 {
		return false
	}
	for i, part := range parts {
		if part == "" {
			return false
		}
		for _, r := range part {
			if (r < 'a' || r > 'z') && (i == 0 || r != '_') {
				return false
			}
		}
	}
	return true
}

// validTraceParent checks the W3C Trace Context traceparent format:
// version "00" is exactly version-traceid-parentid-flags; a later version
// may append "-..." fields, which are ignored as the recommendation asks.
func validTraceParent(s string) bool {
	const minLen = 55 // 2+1+32+1+16+1+2
	if len(s) < minLen {
		return false
	}
	version := s[0:2]
	if !isLowerHex(version) || version == "ff" {
		return false
	}
	if version == "00" && len(s) != minLen {
		return false
	}
	if len(s) > minLen && s[minLen] != '-' {
		return false
	}
	if s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	traceID, parentID, flags := s[3:35], s[36:52], s[53:55]
	return isLowerHex(traceID) && traceID != strings.Repeat("0", 32) &&
		isLowerHex(parentID) && parentID != strings.Repeat("0", 16) &&
		isLowerHex(flags)
}

// validTraceState checks what this package needs of a tracestate: short
// enough to propagate and safe as a header value. Its list syntax is left
// to the tracing library.
func validTraceState(s string) bool {
	if len(s) > maxTraceState {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// isJSONObject reports whether b is one valid JSON object.
func isJSONObject(b []byte) bool {
	t := bytes.TrimLeft(b, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && json.Valid(b)
}

// describeJSON names the kind of JSON value in b for error messages.
func describeJSON(b []byte) string {
	t := bytes.TrimLeft(b, " \t\r\n")
	switch {
	case len(t) == 0:
		return "nothing"
	case !json.Valid(b):
		return "invalid JSON"
	}
	switch t[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// DataSchema is the dataschema attribute of events of typ at version, e.g.
// "urn:shopfloor:event:order.placed:v1". It names the schema; it is not a
// URL to fetch.
func DataSchema(typ string, version int) string {
	return "urn:shopfloor:event:" + typ + ":v" + strconv.Itoa(version)
}
