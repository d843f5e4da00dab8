package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/events"
)

// fixedEnvelope is a complete envelope with fixed values.
func fixedEnvelope() events.Envelope {
	return events.Envelope{
		ID:               "0190a3c1-5e2f-7b3d-9f01-6c2a8e4d1b70",
		Type:             "order.placed",
		Source:           "orders",
		Subject:          "ord_42",
		Time:             time.Date(2024, 7, 1, 9, 30, 0, 123456000, time.UTC),
		SchemaVersion:    2,
		AggregateVersion: 3,
		CorrelationID:    "0190a3c1-0000-7000-8000-000000000001",
		CausationID:      "0190a3c1-0000-7000-8000-000000000002",
		TraceParent:      validTraceParent,
		TraceState:       validTraceState,
		Data:             json.RawMessage(`{"order_id":"ord_42","total_cents":1999}`),
	}
}

func TestMarshalIsDeterministic(t *testing.T) {
	t.Parallel()
	full := fixedEnvelope()
	minimal := fixedEnvelope()
	minimal.CausationID, minimal.TraceParent, minimal.TraceState = "", "", ""
	minimal.Time = time.Date(2024, 7, 1, 9, 30, 0, 0, time.UTC)
	minimal.Data = json.RawMessage("{\n  \"b\": 1,\n  \"a\": [ ]\n}")
	tests := []struct {
		name string
		e    events.Envelope
		want string
	}{
		{"full", full, `{"specversion":"1.0","id":"0190a3c1-5e2f-7b3d-9f01-6c2a8e4d1b70","source":"orders",` +
			`"type":"order.placed","subject":"ord_42","time":"2024-07-01T09:30:00.123456Z",` +
			`"datacontenttype":"application/json","dataschema":"urn:shopfloor:event:order.placed:v2",` +
			`"schemaversion":2,"aggregateversion":3,"correlationid":"0190a3c1-0000-7000-8000-000000000001",` +
			`"causationid":"0190a3c1-0000-7000-8000-000000000002",` +
			`"traceparent":"` + validTraceParent + `","tracestate":"` + validTraceState + `",` +
			`"data":{"order_id":"ord_42","total_cents":1999}}`},
		{"minimal, indented data", minimal, `{"specversion":"1.0","id":"0190a3c1-5e2f-7b3d-9f01-6c2a8e4d1b70","source":"orders",` +
			`"type":"order.placed","subject":"ord_42","time":"2024-07-01T09:30:00Z",` +
			`"datacontenttype":"application/json","dataschema":"urn:shopfloor:event:order.placed:v2",` +
			`"schemaversion":2,"aggregateversion":3,"correlationid":"0190a3c1-0000-7000-8000-000000000001",` +
			`"data":{"b":1,"a":[]}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for range 3 {
				b, err := events.Marshal(tt.e)
				if err != nil {
					t.Fatalf("Marshal: %v", err)
				}
				if string(b) != tt.want {
					t.Fatalf("Marshal =\n%s\nwant\n%s", b, tt.want)
				}
			}
		})
	}
}

func TestMarshalRejectsInvalid(t *testing.T) {
	t.Parallel()
	e := fixedEnvelope()
	e.AggregateVersion = 0
	b, err := events.Marshal(e)
	if !errors.Is(err, events.ErrInvalid) || b != nil {
		t.Fatalf("Marshal = %s, %v; want nil, ErrInvalid", b, err)
	}
	if !strings.Contains(err.Error(), "aggregateversion") {
		t.Errorf("error %q does not name aggregateversion", err)
	}
}

func TestMarshalThenUnmarshalGivesBackTheSameEnvelope(t *testing.T) {
	t.Parallel()
	minimal := fixedEnvelope()
	minimal.CausationID, minimal.TraceParent, minimal.TraceState = "", "", ""
	withNanos := fixedEnvelope()
	withNanos.Time = time.Date(2024, 7, 1, 9, 30, 0, 123456789, time.UTC)
	tests := []struct {
		name string
		e    events.Envelope
	}{
		{"from New", newOrderPlaced(t)},
		{"caused by, with trace", newOrderPlaced(t).CausedBy(newOrderPlaced(t)).WithTrace(validTraceParent, validTraceState)},
		{"full", fixedEnvelope()},
		{"minimal", minimal},
		{"nanoseconds kept", withNanos},
		{"escaped data", func() events.Envelope {
			e, err := events.New("orders", "order.noted", "ord_1", 1, 1,
				map[string]any{"note": "<b>\"ü\"\n & \u2028", "nested": map[string]any{"z": []any{1.5, nil, true}}}, fixedNow())
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			return e
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := events.Marshal(tt.e)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			got, err := events.Unmarshal(b)
			if err != nil {
				t.Fatalf("Unmarshal(%s): %v", b, err)
			}
			if !reflect.DeepEqual(got, tt.e) {
				t.Errorf("round trip:\n got %#v\nwant %#v", got, tt.e)
			}
			again, err := events.Marshal(got)
			if err != nil || string(again) != string(b) {
				t.Errorf("second Marshal = %s, %v; want %s", again, err, b)
			}
		})
	}
}

// edit decodes the JSON document b, applies f and encodes it again.
func edit(t *testing.T, b []byte, f func(doc map[string]any)) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("edit: %v", err)
	}
	f(doc)
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatalf("edit: %v", err)
	}
	return out
}

// indent returns b indented.
func indent(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "\t", "    "); err != nil {
		t.Fatalf("indent: %v", err)
	}
	return buf.Bytes()
}

func TestUnmarshalToleratesUnknownAttributesAndFields(t *testing.T) {
	t.Parallel()
	want := fixedEnvelope()
	b, err := events.Marshal(want)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	tests := []struct {
		name  string
		doc   []byte
		check func(t *testing.T, got events.Envelope)
	}{
		{"unknown attributes", edit(t, b, func(doc map[string]any) {
			doc["partitionkey"] = "ord_42"
			doc["somecompanyext"] = map[string]any{"x": []any{1, 2}}
			doc["ID"] = "not-the-id"
		}), nil},
		{"unknown data fields", edit(t, b, func(doc map[string]any) {
			doc["data"].(map[string]any)["currency"] = "EUR"
			doc["data"].(map[string]any)["lines"] = []any{map[string]any{"sku": "A"}}
		}), func(t *testing.T, got events.Envelope) {
			var p orderPlaced
			if err := got.DecodeData(&p); err != nil {
				t.Fatalf("DecodeData: %v", err)
			}
			if p != (orderPlaced{OrderID: "ord_42", TotalCents: 1999}) {
				t.Errorf("DecodeData = %+v", p)
			}
		}},
		{"no datacontenttype, other dataschema, null extension", edit(t, b, func(doc map[string]any) {
			delete(doc, "datacontenttype")
			doc["dataschema"] = "https://example.com/other"
			doc["causationid"] = nil
		}), func(t *testing.T, got events.Envelope) {
			if got.CausationID != "" {
				t.Errorf("CausationID = %q, want empty", got.CausationID)
			}
		}},
		{"datacontenttype with charset", edit(t, b, func(doc map[string]any) {
			doc["datacontenttype"] = "application/json; charset=utf-8"
		}), nil},
		{"time in another zone", edit(t, b, func(doc map[string]any) {
			doc["time"] = "2024-07-01T11:30:00.123456+02:00"
		}), func(t *testing.T, got events.Envelope) {
			if !reflect.DeepEqual(got.Time, want.Time) {
				t.Errorf("Time = %#v, want %#v", got.Time, want.Time)
			}
		}},
		{"malformed traceparent drops trace context", edit(t, b, func(doc map[string]any) {
			doc["traceparent"] = "00-xyz"
		}), func(t *testing.T, got events.Envelope) {
			if got.TraceParent != "" || got.TraceState != "" {
				t.Errorf("trace context kept: %q %q", got.TraceParent, got.TraceState)
			}
		}},
		{"tracestate without traceparent is dropped", edit(t, b, func(doc map[string]any) {
			delete(doc, "traceparent")
		}), func(t *testing.T, got events.Envelope) {
			if got.TraceState != "" {
				t.Errorf("TraceState = %q, want empty", got.TraceState)
			}
		}},
		{"malformed tracestate alone is dropped", edit(t, b, func(doc map[string]any) {
			doc["tracestate"] = "a=\u00e9"
		}), func(t *testing.T, got events.Envelope) {
			if got.TraceParent != validTraceParent || got.TraceState != "" {
				t.Errorf("trace context = %q %q", got.TraceParent, got.TraceState)
			}
		}},
		{"indented", indent(t, b), func(t *testing.T, got events.Envelope) {
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Unmarshal =\n%#v\nwant\n%#v", got, want)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := events.Unmarshal(tt.doc)
			if err != nil {
				t.Fatalf("Unmarshal(%s): %v", tt.doc, err)
			}
			if tt.check != nil {
				tt.check(t, got)
				return
			}
			if got.ID != want.ID || got.Type != want.Type || got.AggregateVersion != want.AggregateVersion {
				t.Errorf("Unmarshal = %+v, want %+v", got, want)
			}
		})
	}
}

func TestUnmarshalRejectsMissingOrMalformedAttributes(t *testing.T) {
	t.Parallel()
	b, err := events.Marshal(fixedEnvelope())
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	set := func(k string, v any) []byte {
		return edit(t, b, func(doc map[string]any) { doc[k] = v })
	}
	del := func(keys ...string) []byte {
		return edit(t, b, func(doc map[string]any) {
			for _, k := range keys {
				delete(doc, k)
			}
		})
	}
	tests := []struct {
		name   string
		doc    []byte
		fields []string // nil: not a *ValidationError (not an object)
	}{
		{"not JSON", []byte(`{"specversion":`), nil},
		{"array", []byte(`[]`), nil},
		{"null", []byte(`null`), nil},
		{"specversion 0.3", set("specversion", "0.3"), []string{"specversion"}},
		{"specversion 1.0.1", set("specversion", "1.0.1"), []string{"specversion"}},
		{"specversion number", set("specversion", 1.0), []string{"specversion"}},
		{"no specversion", del("specversion"), []string{"specversion"}},
		{"datacontenttype xml", set("datacontenttype", "application/xml"), []string{"datacontenttype"}},
		{"no data", del("data"), []string{"data"}},
		{"data base64 instead", edit(t, b, func(doc map[string]any) {
			delete(doc, "data")
			doc["data_base64"] = "e30="
		}), []string{"data"}},
		{"data array", set("data", []any{1}), []string{"data"}},
		{"data string", set("data", `{"a":1}`), []string{"data"}},
		{"id number", set("id", 7), []string{"id"}},
		{"type invalid", set("type", "OrderPlaced"), []string{"type"}},
		{"time not RFC 3339", set("time", "01 Jul 24 09:30 UTC"), []string{"time"}},
		{"schemaversion string", set("schemaversion", "1"), []string{"schemaversion"}},
		{"schemaversion fraction", set("schemaversion", 1.5), []string{"schemaversion"}},
		{"schemaversion too big", set("schemaversion", 1<<40), []string{"schemaversion"}},
		{"aggregateversion zero", set("aggregateversion", 0), []string{"aggregateversion"}},
		{"several missing", del("id", "source", "subject", "time", "correlationid"), []string{"id", "source", "subject", "time", "correlationid"}},
		{"wrong types and bad values", edit(t, b, func(doc map[string]any) {
			doc["specversion"] = "2.0"
			doc["subject"] = true
			doc["aggregateversion"] = -4
		}), []string{"specversion", "subject", "aggregateversion"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := events.Unmarshal(tt.doc)
			if !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("Unmarshal(%s) = %+v, %v; want ErrInvalid", tt.doc, got, err)
			}
			if tt.fields == nil {
				return
			}
			if fields := fieldsOf(t, err); !slices.Equal(fields, tt.fields) {
				t.Errorf("fields = %v, want %v (error: %v)", fields, tt.fields, err)
			}
		})
	}
}

func TestDecodeDataIgnoresUnknownFieldsAndRejectsWrongTypes(t *testing.T) {
	t.Parallel()
	type lenient struct {
		OrderID string `json:"order_id"`
	}
	type mismatched struct {
		TotalCents string `json:"total_cents"`
	}
	e := fixedEnvelope()
	tests := []struct {
		name    string
		data    string
		dst     any
		wantErr bool
	}{
		{"exact", `{"order_id":"ord_42","total_cents":1999}`, &orderPlaced{}, false},
		{"unknown fields ignored", `{"order_id":"ord_42","total_cents":1999,"new":{"x":1}}`, &lenient{}, false},
		{"missing fields stay zero", `{}`, &orderPlaced{}, false},
		{"number into string", `{"total_cents":1999}`, &mismatched{}, true},
		{"string into number", `{"total_cents":"1999"}`, &orderPlaced{}, true},
		{"object into number", `{"total_cents":{}}`, &orderPlaced{}, true},
		{"not a pointer", `{}`, orderPlaced{}, true},
		{"nil", `{}`, nil, true},
		{"no data", ``, &orderPlaced{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := e
			e.Data = json.RawMessage(tt.data)
			err := e.DecodeData(tt.dst)
			if (err != nil) != tt.wantErr {
				t.Fatalf("DecodeData = %v, want error: %t", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), e.Type) {
				t.Errorf("error %q does not name the event type", err)
			}
		})
	}
}
