package events_test

import (
	"maps"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/events"
)

func TestMetadataCarriesEveryAttributeAndOmitsEmptyOnes(t *testing.T) {
	t.Parallel()
	full := fixedEnvelope()
	minimal := fixedEnvelope()
	minimal.CausationID, minimal.TraceParent, minimal.TraceState = "", "", ""
	base := map[string]string{
		events.MetaID:               "0190a3c1-5e2f-7b3d-9f01-6c2a8e4d1b70",
		events.MetaType:             "order.placed",
		events.MetaSource:           "orders",
		events.MetaSubject:          "ord_42",
		events.MetaTime:             "2024-07-01T09:30:00.123456Z",
		events.MetaSchemaVersion:    "2",
		events.MetaAggregateVersion: "3",
		events.MetaCorrelationID:    "0190a3c1-0000-7000-8000-000000000001",
	}
	withAll := maps.Clone(base)
	withAll[events.MetaCausationID] = "0190a3c1-0000-7000-8000-000000000002"
	withAll[events.MetaTraceParent] = validTraceParent
	withAll[events.MetaTraceState] = validTraceState

	tests := []struct {
		name string
		e    events.Envelope
		want map[string]string
	}{
		{"full", full, withAll},
		{"empty attributes omitted", minimal, base},
		{"zero envelope", events.Envelope{}, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.e.Metadata()
			if !maps.Equal(got, tt.want) {
				t.Errorf("Metadata =\n%v\nwant\n%v", got, tt.want)
			}
		})
	}
}

func TestMetadataKeysAreTheCloudEventsNames(t *testing.T) {
	t.Parallel()
	want := map[string]string{
		events.MetaID:               "ce_id",
		events.MetaType:             "ce_type",
		events.MetaSource:           "ce_source",
		events.MetaSubject:          "ce_subject",
		events.MetaTime:             "ce_time",
		events.MetaSchemaVersion:    "ce_schemaversion",
		events.MetaAggregateVersion: "ce_aggregateversion",
		events.MetaCorrelationID:    "ce_correlationid",
		events.MetaCausationID:      "ce_causationid",
		events.MetaTraceParent:      "traceparent",
		events.MetaTraceState:       "tracestate",
	}
	for k, v := range want {
		if k != v {
			t.Errorf("key constant %q, want %q", k, v)
		}
	}
	if len(want) != 11 {
		t.Errorf("key constants are not distinct: %v", want)
	}
}

// transportMetadata has the definition of watermill's message.Metadata;
// watermill itself is not imported, to keep this package's tests free of
// its dependencies.
type transportMetadata map[string]string

func TestMetadataIsAssignableToTransportMetadata(t *testing.T) {
	t.Parallel()
	e := fixedEnvelope()
	var md transportMetadata = e.Metadata()
	md[events.MetaSubject] = "changed"
	if got := e.Metadata()[events.MetaSubject]; got != e.Subject {
		t.Errorf("Metadata shares its map between calls: subject %q after the caller changed a copy", got)
	}
}
