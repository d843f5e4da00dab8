package events_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/events"
)

// update rewrites golden files: go test ./pkg/events -update. A test flag
// is the one package-level variable tests need; it is never written.
var update = flag.Bool("update", false, "write golden files of event schemas")

// exampleHappened is the payload of the package's own example event.
type exampleHappened struct {
	ExampleID  string            `json:"example_id"`
	AmountCent int64             `json:"amount_cents"`
	Paid       bool              `json:"paid"`
	Tags       []string          `json:"tags"`
	Lines      []exampleLine     `json:"lines"`
	Labels     map[string]string `json:"labels"`
}

type exampleLine struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// schemas is the registry of this package's example event types.
func schemas() []events.Schema {
	return []events.Schema{{
		Type:    "example.happened",
		Version: 1,
		Example: exampleHappened{
			ExampleID:  "ex_1",
			AmountCent: 1250,
			Paid:       true,
			Tags:       []string{"first"},
			Lines:      []exampleLine{{SKU: "SKU-1", Quantity: 2}},
			Labels:     map[string]string{"channel": "web"},
		},
	}}
}

func TestEventSchemasMatchTheirGoldenFiles(t *testing.T) {
	t.Parallel()
	events.CheckGolden(t, filepath.Join("testdata", "golden"), schemas(), *update)
}

// recorder is a testing.TB that records failures instead of failing the
// test, to test CheckGolden's own failures.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf("FATAL: "+format, args...)
}

func (r *recorder) failures() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.errors, "\n")
}

// v1 is the recorded example payload the cases below change.
func v1() map[string]any {
	return map[string]any{
		"order_id":    "ord_1",
		"total_cents": 1999,
		"customer":    map[string]any{"id": "c_1", "email": "a@example.com"},
		"lines":       []any{map[string]any{"sku": "A", "quantity": 1}},
		"x-ref":       "r_1",
	}
}

func TestCheckGoldenDetectsChanges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		change  func(data map[string]any)
		update  bool
		wantErr []string // substrings of the failure; nil: no failure
	}{
		{"unchanged", func(map[string]any) {}, false, nil},
		{"value changed, same shape", func(d map[string]any) { d["order_id"] = "ord_2" }, false, nil},
		{"field added", func(d map[string]any) { d["currency"] = "EUR" }, false, nil},
		{"nested field added", func(d map[string]any) {
			d["lines"] = []any{map[string]any{"sku": "A", "quantity": 1, "price_cents": 5}}
		}, false, nil},
		{"field removed", func(d map[string]any) { delete(d, "total_cents") }, false,
			[]string{"- $.data.total_cents (number): removed or renamed", "order.placed v1", "v2"}},
		{"field renamed", func(d map[string]any) { d["amount_cents"] = d["total_cents"]; delete(d, "total_cents") }, false,
			[]string{"- $.data.total_cents (number): removed or renamed", "+ $.data.amount_cents (number): added"}},
		{"type changed", func(d map[string]any) { d["total_cents"] = "19.99" }, false,
			[]string{"~ $.data.total_cents: type changed from number to string"}},
		{"nested type changed", func(d map[string]any) { d["customer"].(map[string]any)["id"] = 1 }, false,
			[]string{"~ $.data.customer.id: type changed from string to number"}},
		{"array element field removed", func(d map[string]any) { d["lines"] = []any{map[string]any{"sku": "A"}} }, false,
			[]string{"- $.data.lines[*].quantity (number): removed or renamed"}},
		{"odd key removed", func(d map[string]any) { delete(d, "x-ref") }, false,
			[]string{`- $.data["x-ref"] (string): removed or renamed`}},
		{"object became array", func(d map[string]any) { d["customer"] = []any{"c_1"} }, false,
			[]string{"~ $.data.customer: type changed from object to array of string"}},
		{"update refuses a breaking change", func(d map[string]any) { delete(d, "customer") }, true,
			[]string{"- $.data.customer (object): removed or renamed"}},
		{"update accepts an added field", func(d map[string]any) { d["currency"] = "EUR" }, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			events.CheckGolden(t, dir, []events.Schema{{Type: "order.placed", Version: 1, Example: v1()}}, true)
			path := filepath.Join(dir, "order.placed.v1.json")
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("golden file not written: %v", err)
			}

			data := v1()
			tt.change(data)
			rec := &recorder{TB: t}
			events.CheckGolden(rec, dir, []events.Schema{{Type: "order.placed", Version: 1, Example: data}}, tt.update)

			got := rec.failures()
			if tt.wantErr == nil && got != "" {
				t.Fatalf("CheckGolden failed on a compatible change:\n%s", got)
			}
			if tt.wantErr != nil && got == "" {
				t.Fatalf("CheckGolden accepted an incompatible change")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(got, want) {
					t.Errorf("failure does not contain %q:\n%s", want, got)
				}
			}

			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("golden file gone: %v", err)
			}
			wantRewritten := tt.update && tt.wantErr == nil
			if rewritten := string(after) != string(before); rewritten != wantRewritten {
				t.Errorf("golden file rewritten: %t, want %t", rewritten, wantRewritten)
			}
			if wantRewritten && !strings.Contains(string(after), `"currency": "EUR"`) {
				t.Errorf("updated golden file lacks the added field:\n%s", after)
			}
		})
	}
}

func TestCheckGoldenSetup(t *testing.T) {
	t.Parallel()
	valid := events.Schema{Type: "order.placed", Version: 1, Example: v1()}
	tests := []struct {
		name    string
		schemas []events.Schema
		update  bool
		wantErr string // "": no failure
		created bool
	}{
		{"missing file", []events.Schema{valid}, false, "missing; run the test with -update", false},
		{"missing file, update", []events.Schema{valid}, true, "", true},
		{"declared twice", []events.Schema{valid, valid}, true, "declared twice", true},
		{"invalid type", []events.Schema{{Type: "Order", Version: 1, Example: v1()}}, true, "type: must match", false},
		{"invalid version", []events.Schema{{Type: "order.placed", Version: 0, Example: v1()}}, true, "schemaversion: must be >= 1", false},
		{"example not an object", []events.Schema{{Type: "order.placed", Version: 1, Example: []int{1}}}, true, "data: must be a JSON object", false},
		{"nil example", []events.Schema{{Type: "order.placed", Version: 1}}, true, "data: must be a JSON object", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "golden")
			rec := &recorder{TB: t}
			events.CheckGolden(rec, dir, tt.schemas, tt.update)
			got := rec.failures()
			switch {
			case tt.wantErr == "" && got != "":
				t.Errorf("CheckGolden failed:\n%s", got)
			case tt.wantErr != "" && !strings.Contains(got, tt.wantErr):
				t.Errorf("failure does not contain %q:\n%s", tt.wantErr, got)
			}
			_, err := os.Stat(filepath.Join(dir, "order.placed.v1.json"))
			if created := err == nil; created != tt.created {
				t.Errorf("golden file created: %t, want %t", created, tt.created)
			}
		})
	}
}

func TestCheckGoldenRequiresDecodableRecord(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "order.placed.v1.json")
	env, err := events.GoldenEnvelope(events.Schema{Type: "order.placed", Version: 1, Example: v1()})
	if err != nil {
		t.Fatalf("GoldenEnvelope: %v", err)
	}
	b, err := events.Marshal(env)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	// A record in an old encoding the current reader rejects.
	b = []byte(strings.Replace(string(b), `"specversion":"1.0"`, `"specversion":"0.3"`, 1))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatalf("write: %v", err)
	}
	rec := &recorder{TB: t}
	events.CheckGolden(rec, dir, []events.Schema{{Type: "order.placed", Version: 1, Example: v1()}}, false)
	if got := rec.failures(); !strings.Contains(got, "cannot read the recorded event") || !strings.Contains(got, "specversion") {
		t.Errorf("failure = %q, want a read failure naming specversion", got)
	}
}
