package events_test

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopfloor/shopfloor/pkg/events"
)

// orderPlaced is an example payload.
type orderPlaced struct {
	OrderID    string `json:"order_id"`
	TotalCents int64  `json:"total_cents"`
}

const (
	validTraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	validTraceState  = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
)

// fixedNow is a fixed instant with nanoseconds, in a non-UTC zone.
func fixedNow() time.Time {
	return time.Date(2024, 7, 1, 11, 30, 0, 123456789, time.FixedZone("CEST", 2*60*60))
}

// newOrderPlaced builds a valid envelope or fails the test.
func newOrderPlaced(t *testing.T) events.Envelope {
	t.Helper()
	e, err := events.New("orders", "order.placed", "ord_42", 1, 3, orderPlaced{OrderID: "ord_42", TotalCents: 1999}, fixedNow())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

// fieldsOf returns the attribute names a *ValidationError names.
func fieldsOf(t *testing.T, err error) []string {
	t.Helper()
	var verr *events.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("error %v is not a *events.ValidationError", err)
	}
	var fields []string
	for _, f := range verr.Fields {
		fields = append(fields, f.Field)
	}
	return fields
}

func TestNewBuildsAUUIDv7EnvelopeCorrelatedToItself(t *testing.T) {
	t.Parallel()
	e := newOrderPlaced(t)

	u, err := uuid.Parse(e.ID)
	if err != nil || u.Version() != 7 || u.String() != e.ID {
		t.Errorf("ID = %q (err %v), want a canonical UUIDv7", e.ID, err)
	}
	if e.CorrelationID != e.ID {
		t.Errorf("CorrelationID = %q, want the ID %q", e.CorrelationID, e.ID)
	}
	if e.CausationID != "" || e.TraceParent != "" || e.TraceState != "" {
		t.Errorf("optional attributes set: %+v", e)
	}
	wantTime := time.Date(2024, 7, 1, 9, 30, 0, 123456000, time.UTC)
	if !e.Time.Equal(wantTime) || e.Time.Location() != time.UTC {
		t.Errorf("Time = %v, want %v (UTC, microseconds)", e.Time, wantTime)
	}
	if got, want := string(e.Data), `{"order_id":"ord_42","total_cents":1999}`; got != want {
		t.Errorf("Data = %s, want %s", got, want)
	}
	if e.Source != "orders" || e.Type != "order.placed" || e.Subject != "ord_42" || e.SchemaVersion != 1 || e.AggregateVersion != 3 {
		t.Errorf("attributes not kept: %+v", e)
	}
	if err := e.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestNewRejectsInvalidAttributesNamingEachField(t *testing.T) {
	t.Parallel()
	now := time.Date(2024, 7, 1, 9, 30, 0, 0, time.UTC)
	type args struct {
		source, typ, subject string
		schemaVersion        int
		aggregateVersion     int64
		data                 any
		now                  time.Time
	}
	valid := args{"orders", "order.placed", "ord_42", 1, 1, orderPlaced{OrderID: "ord_42"}, now}
	tests := []struct {
		name   string
		edit   func(*args)
		fields []string
	}{
		{"empty source", func(a *args) { a.source = "" }, []string{"source"}},
		{"empty type", func(a *args) { a.typ = "" }, []string{"type"}},
		{"type without dot", func(a *args) { a.typ = "placed" }, []string{"type"}},
		{"type upper case", func(a *args) { a.typ = "Order.placed" }, []string{"type"}},
		{"type digit", func(a *args) { a.typ = "order.placed2" }, []string{"type"}},
		{"type underscore in first part", func(a *args) { a.typ = "sales_order.placed" }, []string{"type"}},
		{"type empty part", func(a *args) { a.typ = "order..placed" }, []string{"type"}},
		{"type trailing dot", func(a *args) { a.typ = "order.placed." }, []string{"type"}},
		{"empty subject", func(a *args) { a.subject = "" }, []string{"subject"}},
		{"subject with newline", func(a *args) { a.subject = "ord\n42" }, []string{"subject"}},
		{"zero time", func(a *args) { a.now = time.Time{} }, []string{"time"}},
		{"schema version 0", func(a *args) { a.schemaVersion = 0 }, []string{"schemaversion"}},
		{"negative aggregate version", func(a *args) { a.aggregateVersion = -1 }, []string{"aggregateversion"}},
		{"nil data", func(a *args) { a.data = nil }, []string{"data"}},
		{"slice data", func(a *args) { a.data = []int{1} }, []string{"data"}},
		{"string data", func(a *args) { a.data = "hello" }, []string{"data"}},
		{"bytes data", func(a *args) { a.data = []byte(`{"a":1}`) }, []string{"data"}},
		{"unmarshalable data", func(a *args) { a.data = map[string]any{"c": make(chan int)} }, []string{"data"}},
		{"everything", func(a *args) { *a = args{typ: "X"} }, []string{"source", "type", "subject", "time", "schemaversion", "aggregateversion", "data"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := valid
			tt.edit(&a)
			e, err := events.New(a.source, a.typ, a.subject, a.schemaVersion, a.aggregateVersion, a.data, a.now)
			if !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("New error = %v, want ErrInvalid", err)
			}
			if e.ID != "" {
				t.Errorf("New returned a non-zero envelope with an error: %+v", e)
			}
			if got := fieldsOf(t, err); !slices.Equal(got, tt.fields) {
				t.Errorf("fields = %v, want %v (error: %v)", got, tt.fields, err)
			}
			for _, f := range tt.fields {
				if !strings.Contains(err.Error(), f+": ") {
					t.Errorf("message %q does not name %s", err, f)
				}
			}
		})
	}
}

func TestNewWrapsMarshalError(t *testing.T) {
	t.Parallel()
	_, err := events.New("orders", "order.placed", "ord_42", 1, 1, map[string]any{"c": make(chan int)}, time.Now())
	var jerr *json.UnsupportedTypeError
	if !errors.As(err, &jerr) || !errors.Is(err, events.ErrInvalid) {
		t.Errorf("error %v does not wrap both ErrInvalid and the json error", err)
	}
}

func TestValidateAcceptsBuiltEnvelopesAndNamesEachBadField(t *testing.T) {
	t.Parallel()
	base := newOrderPlaced(t)
	tests := []struct {
		name   string
		edit   func(*events.Envelope)
		fields []string // nil: valid
	}{
		{"as built", func(*events.Envelope) {}, nil},
		{"with causation and trace", func(e *events.Envelope) {
			*e = e.CausedBy(base).WithTrace(validTraceParent, validTraceState)
		}, nil},
		{"future traceparent version with extra field", func(e *events.Envelope) {
			e.TraceParent = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what"
		}, nil},
		{"max aggregate version", func(e *events.Envelope) { e.AggregateVersion = math.MaxInt64 }, nil},
		{"empty id", func(e *events.Envelope) { e.ID = "" }, []string{"id"}},
		{"not a uuid", func(e *events.Envelope) { e.ID = "ord_42" }, []string{"id"}},
		{"upper-case uuid", func(e *events.Envelope) { e.ID = strings.ToUpper(e.ID) }, []string{"id"}},
		{"uuid v4", func(e *events.Envelope) { e.ID = "3f0e7a8c-2b1d-4c5e-9f6a-7b8c9d0e1f2a" }, []string{"id"}},
		{"empty correlation", func(e *events.Envelope) { e.CorrelationID = "" }, []string{"correlationid"}},
		{"causation with control char", func(e *events.Envelope) { e.CausationID = "a\x00b" }, []string{"causationid"}},
		{"invalid utf-8 source", func(e *events.Envelope) { e.Source = "ord\xffers" }, []string{"source"}},
		{"year 10000", func(e *events.Envelope) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, []string{"time"}},
		{"traceparent garbage", func(e *events.Envelope) { e.TraceParent = "hello" }, []string{"traceparent"}},
		{"traceparent upper case", func(e *events.Envelope) { e.TraceParent = strings.ToUpper(validTraceParent) }, []string{"traceparent"}},
		{"traceparent zero trace id", func(e *events.Envelope) {
			e.TraceParent = "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
		}, []string{"traceparent"}},
		{"traceparent version ff", func(e *events.Envelope) {
			e.TraceParent = "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		}, []string{"traceparent"}},
		{"traceparent v00 too long", func(e *events.Envelope) { e.TraceParent = validTraceParent + "-00" }, []string{"traceparent"}},
		{"tracestate alone", func(e *events.Envelope) { e.TraceState = validTraceState }, []string{"tracestate"}},
		{"tracestate too long", func(e *events.Envelope) {
			e.TraceParent, e.TraceState = validTraceParent, "a="+strings.Repeat("b", 600)
		}, []string{"tracestate"}},
		{"data array", func(e *events.Envelope) { e.Data = json.RawMessage(`[1]`) }, []string{"data"}},
		{"data broken", func(e *events.Envelope) { e.Data = json.RawMessage(`{"a":`) }, []string{"data"}},
		{"data empty", func(e *events.Envelope) { e.Data = nil }, []string{"data"}},
		{"several", func(e *events.Envelope) {
			e.ID, e.Type, e.SchemaVersion, e.TraceState = "x", "order", 0, "a=b"
		}, []string{"id", "type", "schemaversion", "tracestate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := base
			tt.edit(&e)
			err := e.Validate()
			if tt.fields == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("Validate error = %v, want ErrInvalid", err)
			}
			if got := fieldsOf(t, err); !slices.Equal(got, tt.fields) {
				t.Errorf("fields = %v, want %v (error: %v)", got, tt.fields, err)
			}
			if strings.Count(err.Error(), events.ErrInvalid.Error()) != 1 {
				t.Errorf("message %q is not one message", err)
			}
		})
	}
}

func TestIDsAreTimeOrdered(t *testing.T) {
	t.Parallel()
	const n = 2000
	now := time.Date(2024, 7, 1, 9, 30, 0, 0, time.UTC)
	prev := ""
	for i := range n {
		e, err := events.New("orders", "order.placed", "ord_42", 1, int64(i+1), struct{}{}, now)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		if e.ID <= prev {
			t.Fatalf("id %d %s does not sort after %s", i, e.ID, prev)
		}
		prev = e.ID
	}
}

func TestCausedByKeepsTheFlowsCorrelationAndCitesTheParent(t *testing.T) {
	t.Parallel()
	root := newOrderPlaced(t)
	child := newOrderPlaced(t)
	tests := []struct {
		name            string
		parent          events.Envelope
		wantCorrelation string
	}{
		{"root parent", root, root.ID},
		{"parent in a flow", root.CausedBy(events.Envelope{ID: "req-1", CorrelationID: "flow-7"}), "flow-7"},
		{"parent without correlation", events.Envelope{ID: "legacy-1"}, "legacy-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := child.CausedBy(tt.parent)
			if got.CorrelationID != tt.wantCorrelation || got.CausationID != tt.parent.ID {
				t.Errorf("CausedBy: correlation %q causation %q, want %q %q",
					got.CorrelationID, got.CausationID, tt.wantCorrelation, tt.parent.ID)
			}
			if got.ID != child.ID || got.Type != child.Type || got.TraceParent != "" {
				t.Errorf("CausedBy changed other attributes: %+v", got)
			}
		})
	}
	if child.CausationID != "" || child.CorrelationID != child.ID {
		t.Errorf("CausedBy modified its receiver: %+v", child)
	}
}
