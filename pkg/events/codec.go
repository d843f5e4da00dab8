package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"strconv"
	"time"
)

// wireEnvelope is the structured-mode CloudEvents JSON document. The field
// order is the order Marshal writes.
type wireEnvelope struct {
	SpecVersion      string          `json:"specversion"`
	ID               string          `json:"id"`
	Source           string          `json:"source"`
	Type             string          `json:"type"`
	Subject          string          `json:"subject"`
	Time             string          `json:"time"`
	DataContentType  string          `json:"datacontenttype"`
	DataSchema       string          `json:"dataschema"`
	SchemaVersion    int             `json:"schemaversion"`
	AggregateVersion int64           `json:"aggregateversion"`
	CorrelationID    string          `json:"correlationid"`
	CausationID      string          `json:"causationid,omitempty"`
	TraceParent      string          `json:"traceparent,omitempty"`
	TraceState       string          `json:"tracestate,omitempty"`
	Data             json.RawMessage `json:"data"`
}

// Marshal encodes e as a structured-mode CloudEvents JSON document. It is
// deterministic: attributes in a fixed order (see the package doc), empty
// optional attributes (causationid, traceparent, tracestate) left out,
// time in UTC as RFC 3339 with as many fraction digits as needed, data
// compacted. Marshal refuses an invalid envelope with the error of
// Validate, so nothing that breaks the contract is ever written.
func Marshal(e Envelope) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("events: marshal %s %s: %w", e.Type, e.ID, err)
	}
	b, err := json.Marshal(wireEnvelope{
		SpecVersion:      SpecVersion,
		ID:               e.ID,
		Source:           e.Source,
		Type:             e.Type,
		Subject:          e.Subject,
		Time:             e.Time.UTC().Format(time.RFC3339Nano),
		DataContentType:  DataContentType,
		DataSchema:       DataSchema(e.Type, e.SchemaVersion),
		SchemaVersion:    e.SchemaVersion,
		AggregateVersion: e.AggregateVersion,
		CorrelationID:    e.CorrelationID,
		CausationID:      e.CausationID,
		TraceParent:      e.TraceParent,
		TraceState:       e.TraceState,
		Data:             e.Data,
	})
	if err != nil {
		return nil, fmt.Errorf("events: marshal %s %s: %w", e.Type, e.ID, err)
	}
	return b, nil
}

// Unmarshal decodes a structured-mode CloudEvents JSON document.
//
// It is a tolerant reader: attributes it does not know (other extensions,
// dataschema) are ignored, attribute names are matched exactly, null
// counts as absent, datacontenttype may be absent, and a malformed
// traceparent is dropped together with tracestate (a malformed tracestate
// alone is dropped) rather than failing the event, as W3C Trace Context
// asks. Time is returned in UTC and Data in compact form, so
// Unmarshal(Marshal(e)) equals e for every e built by New.
//
// It rejects, with an error wrapping ErrInvalid: input that is not a JSON
// object, a specversion other than "1.0" (including a missing one), a
// datacontenttype other than application/json, attributes of the wrong
// JSON type, and anything Validate rejects. A *ValidationError names every
// bad attribute at once.
func Unmarshal(b []byte) (Envelope, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		return Envelope{}, fmt.Errorf("%w: not a JSON object: %w", ErrInvalid, err)
	}
	if doc == nil { // the input was null
		return Envelope{}, fmt.Errorf("%w: not a JSON object: got null", ErrInvalid)
	}

	r := reader{doc: doc}
	if v := r.str(attrSpecVersion); v != SpecVersion && !r.failed(attrSpecVersion) {
		r.fail(attrSpecVersion, fmt.Sprintf("must be %q, got %q", SpecVersion, v), nil)
	}
	if v := r.str(attrDataContentType); v != "" {
		if mt, _, err := mime.ParseMediaType(v); err != nil || mt != DataContentType {
			r.fail(attrDataContentType, fmt.Sprintf("must be %q, got %q", DataContentType, v), err)
		}
	}
	e := Envelope{
		ID:               r.str(attrID),
		Source:           r.str(attrSource),
		Type:             r.str(attrType),
		Subject:          r.str(attrSubject),
		Time:             r.time(attrTime),
		SchemaVersion:    int(r.integer(attrSchemaVersion, 32)),
		AggregateVersion: r.integer(attrAggregateVersion, 64),
		CorrelationID:    r.str(attrCorrelationID),
		CausationID:      r.str(attrCausationID),
		TraceParent:      r.str(attrTraceParent),
		TraceState:       r.str(attrTraceState),
		Data:             r.data(attrData),
	}
	if e.TraceParent != "" && !validTraceParent(e.TraceParent) {
		e.TraceParent, e.TraceState = "", ""
	}
	if e.TraceState != "" && (e.TraceParent == "" || !validTraceState(e.TraceState)) {
		e.TraceState = ""
	}

	// Report decode failures first, then contract violations of the
	// attributes that decoded, each attribute once.
	fields := r.fields
	for _, f := range e.problems() {
		if !r.failed(f.Field) {
			fields = append(fields, f)
		}
	}
	if len(fields) > 0 {
		return Envelope{}, &ValidationError{Fields: fields}
	}
	return e, nil
}

// DecodeData unmarshals e.Data into dst, a non-nil pointer, with
// encoding/json. Unknown fields in data are ignored (producers add fields
// without notice) but a value of the wrong JSON type is an error, and so is
// empty Data. Field names are matched as encoding/json does, preferring an
// exact match and falling back to a case-insensitive one.
func (e Envelope) DecodeData(dst any) error {
	if len(e.Data) == 0 {
		return fmt.Errorf("events: decode data of %s v%d %s: %w: no data", e.Type, e.SchemaVersion, e.ID, ErrInvalid)
	}
	if err := json.Unmarshal(e.Data, dst); err != nil {
		return fmt.Errorf("events: decode data of %s v%d %s: %w", e.Type, e.SchemaVersion, e.ID, err)
	}
	return nil
}

// reader decodes attributes of a CloudEvents JSON document and collects
// the ones of the wrong type.
type reader struct {
	doc    map[string]json.RawMessage
	fields []FieldError
}

func (r *reader) fail(field, problem string, err error) {
	r.fields = append(r.fields, FieldError{Field: field, Problem: problem, Err: err})
}

func (r *reader) failed(field string) bool {
	for _, f := range r.fields {
		if f.Field == field {
			return true
		}
	}
	return false
}

// raw returns the attribute's JSON value, or nil if it is absent or null.
func (r *reader) raw(field string) json.RawMessage {
	v, ok := r.doc[field]
	if !ok || string(v) == "null" {
		return nil
	}
	return v
}

func (r *reader) str(field string) string {
	v := r.raw(field)
	if v == nil {
		return ""
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		r.fail(field, "must be a JSON string, got "+describeJSON(v), err)
		return ""
	}
	return s
}

// integer decodes a JSON number without fraction or exponent that fits in
// bits.
func (r *reader) integer(field string, bits int) int64 {
	v := r.raw(field)
	if v == nil {
		return 0
	}
	n, err := strconv.ParseInt(string(v), 10, bits)
	if err != nil {
		r.fail(field, fmt.Sprintf("must be a JSON integer of at most %d bits, got %s", bits, v), err)
		return 0
	}
	return n
}

func (r *reader) time(field string) time.Time {
	s := r.str(field)
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		r.fail(field, fmt.Sprintf("must be an RFC 3339 timestamp, got %q", s), err)
		return time.Time{}
	}
	return t.UTC()
}

// data returns the payload in compact form; validation checks its kind.
func (r *reader) data(field string) json.RawMessage {
	v := r.raw(field)
	if v == nil {
		return nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, v); err != nil {
		r.fail(field, "must be valid JSON", err)
		return nil
	}
	return buf.Bytes()
}
