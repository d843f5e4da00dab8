package events

import (
	"strconv"
	"time"
)

// Transport metadata keys written by Envelope.Metadata. The ce_ prefix
// follows the CloudEvents binary-mode convention of prefixing attribute
// names; traceparent and tracestate keep their W3C header names so that
// standard propagators find them.
const (
	MetaID               = "ce_id"
	MetaType             = "ce_type"
	MetaSource           = "ce_source"
	MetaSubject          = "ce_subject"
	MetaTime             = "ce_time"
	MetaSchemaVersion    = "ce_schemaversion"
	MetaAggregateVersion = "ce_aggregateversion"
	MetaCorrelationID    = "ce_correlationid"
	MetaCausationID      = "ce_causationid"
	MetaTraceParent      = "traceparent"
	MetaTraceState       = "tracestate"
)

// Metadata returns e's attributes as string headers for a transport
// (watermill's message.Metadata is a map[string]string, so the result can
// be assigned to it directly). Keys are the Meta* constants; time is UTC
// RFC 3339 with nanosecond precision trimmed (time.RFC3339Nano); versions
// are decimal. Empty attributes are left out, so the map of an envelope
// without causation or trace context has no such keys. The map is new on
// every call and the caller may modify it. Metadata does not validate e.
func (e Envelope) Metadata() map[string]string {
	md := make(map[string]string, 11)
	set := func(k, v string) {
		if v != "" {
			md[k] = v
		}
	}
	set(MetaID, e.ID)
	set(MetaType, e.Type)
	set(MetaSource, e.Source)
	set(MetaSubject, e.Subject)
	if !e.Time.IsZero() {
		md[MetaTime] = e.Time.UTC().Format(time.RFC3339Nano)
	}
	if e.SchemaVersion != 0 {
		md[MetaSchemaVersion] = strconv.Itoa(e.SchemaVersion)
	}
	if e.AggregateVersion != 0 {
		md[MetaAggregateVersion] = strconv.FormatInt(e.AggregateVersion, 10)
	}
	set(MetaCorrelationID, e.CorrelationID)
	set(MetaCausationID, e.CausationID)
	set(MetaTraceParent, e.TraceParent)
	set(MetaTraceState, e.TraceState)
	return md
}
